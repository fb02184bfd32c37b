"""`job run`'s exit deadline (connectors.job_ops.arm_exit_deadline): a process stuck after a stop
began, in Python code or in a call that holds no interpreter lock to give, still ends, and says
where it was stuck."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.unit

STUCK = """
import threading, time
from connectors.job_ops import arm_exit_deadline
arm_exit_deadline(1)
threading.Thread(target=lambda: threading.Event().wait(), name="worker").start()   # non-daemon: exit would wait for it
def stuck_in_the_stop():
    time.sleep(60)
stuck_in_the_stop()
"""


def test_a_stuck_process_ends_with_its_threads_stacks():
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", STUCK], cwd=ROOT, capture_output=True, text=True, timeout=50)
    assert r.returncode == 1, r.stderr
    assert time.monotonic() - t0 < 40          # not the 60 s sleep, nor the thread that never ends
    assert "Timeout (0:00:01)!" in r.stderr and "stuck_in_the_stop" in r.stderr, r.stderr
    assert r.stderr.count("most recent call first") == 2, r.stderr    # both threads' stacks


def test_a_stuck_interpreter_exit_ends_too():
    """The main thread returned, but a non-daemon thread keeps the interpreter's exit waiting."""
    code = ("import threading\nfrom connectors.job_ops import arm_exit_deadline\narm_exit_deadline(1)\n"
            "threading.Thread(target=lambda: threading.Event().wait()).start()\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=50)
    assert r.returncode == 1 and "Timeout (0:00:01)!" in r.stderr, r.stderr
