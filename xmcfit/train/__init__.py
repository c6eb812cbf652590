"""Training: the recipe (loop.py) and its parts: optimizers, schedules, checkpoints, run directory, memory."""
