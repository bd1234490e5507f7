"""Whetstone's browser workbench (Gradio only).

Never imports torch, transformers, peft or bitsandbytes: the UI process stays light, and every heavy
job runs in a worker subprocess started from a written config (DESIGN.md contract 3).
"""
