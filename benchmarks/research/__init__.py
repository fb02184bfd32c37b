"""Research: the learned logo-region head, off in the job (it does not recognise brands it was
not trained on; `docs/research/logo-models.md`). The head and how windows become embeddings
(`logo_head`), its training script (`train_logo_head`) and weights (`logo_head*.npz`), its FAISS
index and `ImageSignals` plug-in (`logos`), and the cross-fitted and fine-tuning evaluations.
Not installed with the package; no product module imports it (`tests/unit/test_layering.py`)."""
