"""Deployment: every run's inference form as ONNX, proven equal to PyTorch, and what it costs to run."""
