"""Progress bars: only for a person at a terminal, and the scan's bar follows the job's source
records from the REST API the embedded cluster serves (a live local HTTP server here)."""
from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from zeroscan.progress import ScanProgress, bar, wanted

pytestmark = pytest.mark.unit


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal_and_not_when_quiet(capsys):
    assert wanted(stream=_Tty()) and not wanted(quiet=True, stream=_Tty()) and not wanted(stream=io.StringIO())
    with bar(10, "quiet", enabled=False) as b:
        b.update(10)
    with bar(10, "shown", enabled=True) as b:
        b.update(10)
    err = capsys.readouterr().err
    assert "quiet" not in err and "shown" in err and "10/10" in err


def _job_api(job_id: str, read: list[int]):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path != f"/jobs/{job_id}":
                self.send_error(404)
                return
            body = json.dumps({"vertices": [
                {"name": "Source: inputs_file[1] -> Calc[2]", "metrics": {"write-records": read[0]}},
                {"name": "OverAggregate[4] -> PythonCalc[5]", "metrics": {"write-records": 1}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_scan_progress_follows_the_source_and_counts_outputs(capsys):
    read = [0]
    server = _job_api("abc", read)
    try:
        p = ScanProgress(20, enabled=True, ports=[server.server_port])
        p.started("abc")
        read[0] = 12
        for kind in ("decision", "decision", "dead", "ledger", "decision"):
            p.row(kind)
        deadline = time.monotonic() + 10
        while p._bar.n < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p._bar.n == 12          # the source vertex's records out, not the other vertex's
        p.close(done=True)
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert "scanned" in err and "20/20" in err
    assert "3 decisions, 1 dead letters, 1 ledger events" in err


def test_a_disabled_scan_progress_prints_nothing_and_asks_no_one(capsys):
    p = ScanProgress(5, enabled=False, ports=[1])
    p.started("abc")
    p.row("decision")
    p.close(done=True)
    assert capsys.readouterr().err == ""
    assert p._thread is None
