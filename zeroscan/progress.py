"""Progress bars for long runs, on stderr, drawn only for a person at a terminal: off when stderr
is not a TTY (logs, CI, pipes) or when asked to be quiet."""
from __future__ import annotations

import sys
import threading
from collections import Counter

from tqdm import tqdm


def wanted(quiet: bool = False, stream=None) -> bool:
    stream = stream or sys.stderr
    return not quiet and hasattr(stream, "isatty") and stream.isatty()


def bar(total: float | None = None, desc: str = "", unit: str = "it", enabled: bool | None = None, **kw) -> tqdm:
    """A tqdm bar on stderr; disabled (every call a no-op) unless `enabled`, by default when
    stderr is a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True,
                disable=not (wanted() if enabled is None else enabled), **kw)


class ScanProgress:
    """`zeroscan scan`: the input records the job has read (the source's records out, from the
    embedded cluster's REST API, polled every half second) of the input's total, with the
    decisions, dead letters and ledger events written so far. Before the job runs the bar says
    that Flink is starting (most of a small scan is start-up)."""

    POLL_S = 0.5

    def __init__(self, total: int, enabled: bool, ports=None):
        from connectors.job_ops import EMBEDDED_REST_PORTS

        self.enabled, self.ports = enabled, ports or EMBEDDED_REST_PORTS
        self.outputs: Counter[str] = Counter()
        self._bar = bar(total, "starting Flink", "rec", enabled)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def started(self, job_id: str) -> None:
        if not self.enabled:
            return
        self._bar.set_description("scanning")
        self._thread = threading.Thread(target=self._poll, args=(job_id,), name="scan-progress", daemon=True)
        self._thread.start()

    def row(self, kind: str) -> None:
        self.outputs[kind] += 1

    def _postfix(self) -> str:
        return (f"{self.outputs['decision']} decisions, {self.outputs['dead']} dead letters, "
                f"{self.outputs['ledger']} ledger events")

    def _poll(self, job_id: str) -> None:
        from connectors.job_ops import find_web_ui, rest_get

        base = find_web_ui(job_id, self.ports, timeout_s=30)
        while base is not None and not self._stop.wait(self.POLL_S):
            try:
                vertices = rest_get(base, f"/jobs/{job_id}", timeout_s=2)["vertices"]
            except (OSError, ValueError, KeyError):
                continue
            read = sum(v.get("metrics", {}).get("write-records", 0) for v in vertices
                       if v.get("name", "").startswith("Source:"))
            self._bar.n = min(read, self._bar.total or read)
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.refresh()

    def close(self, done: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if done and self._bar.total:
            self._bar.n = self._bar.total
            self._bar.set_description("scanned")
        self._bar.set_postfix_str(self._postfix(), refresh=False)
        self._bar.close()
