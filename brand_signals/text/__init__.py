"""Text: what a listing's words say about a brand. Normalisation that folds listing text and
trademarks into one comparable form and records the folds it needed (`textnorm`), the token
streams searched for disguised marks (`token_streams`), the word-mark index that finds enrolled
marks in a listing's fields (`wordmarks`), the rules that read the words around a hit
(`mark_context`) and the index's small records (`mark_records`)."""
