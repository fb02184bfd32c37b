"""ONNX models, their wrappers and the scripts that export them (image signals).

`embedder.FeatureExtractor` (EfficientNet-Lite0 feature maps), `ocr.TextReader` (RapidOCR),
`logo_head.LogoHead` (the learned logo-region head; research only, off in the job because it does
not recognise brands it was not trained on). `export_efficientnet.py` and
`train_logo_head.py` are offline scripts; their extra packages are in requirements-export.txt,
the files' licences in LICENSES.md.
"""
