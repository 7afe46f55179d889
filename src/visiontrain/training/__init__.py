"""Where the training schedule lives: freeze-then-fine-tune stages, parameter groups, LR curves, reports."""
