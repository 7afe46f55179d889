"""Experiment tracking: Weights & Biases runs that resume, finish on failure, and carry the model artifacts."""
