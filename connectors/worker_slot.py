"""A numbered slot folder per worker process (the image result cache's): PyFlink functions are
not told their subtask index, so each worker claims the first free slot with an exclusive lock."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

# More slots than any worker count on one machine; a worker that finds all taken fails loudly.
MAX_SLOTS = 1024


def claim_slot(root: Path) -> tuple[Path, int]:
    """The first numbered slot folder under `root` that no other live process holds."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(MAX_SLOTS):
        fd = os.open(root / f"slot-{i}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return root / f"slot-{i}", fd
    raise RuntimeError(f"all {MAX_SLOTS} context store slots under {root} are taken")
