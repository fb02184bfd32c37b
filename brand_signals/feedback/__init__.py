"""The feedback loop: what brand owners' removals and reviewers' appeals teach the scanner. The
ledger's records (`ledger`), the fingerprints that find near-duplicates of a confirmed removal
(`fingerprints`), what the scanner has seen of each listing (`context`), and the state replayed
from the ledger into every operator that judges each removal and answers the feedback signals
(`state`: `FeedbackState`, `handle_feedback`)."""
