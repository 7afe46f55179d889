"""The exported model on onnxruntime, with no torch: what predict, serve, stream and drift all run."""
