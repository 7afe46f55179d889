"""visiontrain: fine-tune timm backbones with Lightning and Hydra, export the best checkpoint to ONNX."""

__version__ = "0.1.0"
