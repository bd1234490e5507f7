"""Whetstone's engine: the work. Never imports gradio or plotly.

Light modules (stdlib + yaml, importable by the UI): config, events, runs, launcher, model_names,
dataset_names, paths. Heavy modules import torch and friends: models, data, train.
"""
