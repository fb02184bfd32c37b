"""ONNX models, their wrappers and the scripts that export them (image signals)."""
