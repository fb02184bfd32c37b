"""A stop asked for by SIGTERM/SIGINT or by another thread, taken safely in a signal handler.

A Python signal handler runs in the main thread between two bytecodes of whatever it was doing.
One that calls `threading.Event.set()` takes the event's lock, which is not re-entrant: if the
main thread held that lock at that moment (inside `Event.wait` or `set`, or in the handler of a
first signal when a second comes), the process hangs for good. Two SIGTERMs in a row did exactly
that to `job run`. The handler here only appends to a list (one C call, no lock); the waiting side
polls."""
from __future__ import annotations

import signal
import threading
import time

# How long `wait` sleeps between two looks at the request.
POLL_S = 0.1


class StopRequest:
    def __init__(self, event: threading.Event | None = None):
        """`event`: set by another thread to ask for the stop (a test, an embedding program)."""
        self.event = event or threading.Event()
        self.signals: list[int] = []     # the signals received, in order

    def install(self) -> "StopRequest":
        """Take SIGTERM and SIGINT from now on (only from the main thread, where Python runs
        signal handlers; elsewhere only `event` asks)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame) -> None:
        self.signals.append(signum)      # no lock: see the module's docstring

    @property
    def asked(self) -> bool:
        return bool(self.signals) or self.event.is_set()   # is_set reads a flag, takes no lock

    @property
    def forced(self) -> bool:
        """A second signal: the sender does not want to wait for a clean stop."""
        return len(self.signals) >= 2

    def wait(self, timeout_s: float) -> bool:
        """Up to `timeout_s` for a stop to be asked; whether it was."""
        deadline = time.monotonic() + timeout_s
        while not self.asked:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(POLL_S, left))
        return True
