"""Offline builders: text encoders and routing heads to ONNX, and the Triton model repository."""
