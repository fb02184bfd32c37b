"""ONNX models, their wrappers and the script that exports them (image signals).

`embedder.FeatureExtractor` (EfficientNet-Lite0 feature maps), `ocr.TextReader` (RapidOCR) and
`device` (which onnxruntime provider they run on); `ocr_graphs` writes the OCR graphs the
reader runs (the wheel's, rewritten at set-up). `export_efficientnet.py` is an offline
script; its extra packages are in requirements-export.txt, the files' licences in LICENSES.md.
The learned logo-region head is research, not product: `benchmarks/research/`.
"""
