"""SIGTERM/SIGINT taken as a stop request (connectors.stop_request): a burst of signals, each
possibly arriving inside the handler of the one before, must neither hang the process nor be
lost; the second one is a forced stop. (A handler that set a threading.Event hung `job run` for
good when two SIGTERMs came in a row.)"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from connectors.stop_request import StopRequest
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

CHILD = """
import sys, time
from connectors.stop_request import StopRequest
req = StopRequest().install()
print("ready", flush=True)
while not req.wait(0.5):
    pass
deadline = time.monotonic() + 1.0     # the stop phase: still running Python code as signals come
while time.monotonic() < deadline:
    req.asked, req.forced
print("stopped", len(req.signals) >= 2, req.forced, flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_burst_of_signals_stops_once_and_forces(sig):
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready"
            for i in range(2000):          # a flood: many land inside a running handler
                child.send_signal(sig)
                if i % 100 == 99:
                    time.sleep(0.001)
            out, _ = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 0 and out.split() == ["stopped", "True", "True"], out


def test_another_thread_asks_through_the_event():
    ev = threading.Event()
    req = StopRequest(ev)          # not installed: off the main thread's signals
    assert not req.wait(0.05) and not req.asked
    threading.Timer(0.1, ev.set).start()
    assert req.wait(10) and req.asked and not req.forced
