"""Side-by-side runs of a measuring script over checkouts: one fresh process per checkout and
round, alternating, so that each sees the machine at nearly the same time (used by
`ab_matching` and `ab_images`). The script runs from this tree against each checkout's code
(PYTHONPATH and working folder the checkout) and prints its figures as a JSON line last.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def checkouts(ap: argparse.ArgumentParser, given: list[str]) -> list[tuple[str, str]]:
    """NAME=CHECKOUT arguments as (name, folder); an argparse error unless each is a folder."""
    pairs = [c.split("=", 1) for c in given]
    if not pairs or any(len(p) != 2 or not Path(p[1]).is_dir() for p in pairs):
        ap.error("give NAME=CHECKOUT for each checkout to compare (a folder)")
    return [(name, str(Path(folder).resolve())) for name, folder in pairs]


def alternate(script: str, pairs: list[tuple[str, str]], rounds: int, args: list[str],
              env: dict[str, str] | None = None, timeout: float = 1200) -> dict[str, list[dict]] | None:
    """Each checkout's figures per round (printed as they come, one JSON line each); None, with
    the failing process's stderr printed, when one fails."""
    results: dict[str, list[dict]] = {name: [] for name, _ in pairs}
    for r in range(rounds):
        for name, folder in pairs:
            done = subprocess.run([sys.executable, str(Path(script).resolve()), "--measure", *args], cwd=folder,
                                  env={**os.environ, **(env or {}), "PYTHONPATH": folder},
                                  capture_output=True, text=True, timeout=timeout)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return None
            got = json.loads(done.stdout.strip().splitlines()[-1])
            results[name].append(got)
            print(json.dumps({"round": r + 1, "name": name, **got}), flush=True)
    return results
