"""Where models leave: ONNX export with metadata, and the onnxruntime-vs-PyTorch parity check."""
