"""The inference side: `visiontrain predict` and `visiontrain serve` on an exported ONNX file.

Everything here runs on onnxruntime, numpy, PIL, OpenCV and pandas only: no torch, Lightning, timm,
albumentations or scikit-learn is imported, so a deployment image stays small and starts fast. The ONNX
file is the whole contract: its metadata says how to preprocess inputs and how to read the outputs.
"""
