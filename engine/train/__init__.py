"""The training worker (heavy): `python -m engine.train --config saves/<run>/config.yaml`.

worker (the loop, top to bottom), args (the Trainer's arguments), stages (which trainer on which rows),
collate, loss, optimizers, checkpoints (atomic), hooks (events and clean stops), ranks (the worker's
side of several processes) and output (the final adapter or model folder).
"""
