"""JEPA variants: one file per paper, plain PyTorch, no Ray (see variants/base.py)."""
