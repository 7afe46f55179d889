"""Torch-free pieces shared by training and deploy: decoding, preprocessing, table rules, model metadata."""
