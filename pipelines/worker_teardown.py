"""The embedded default runs PyFlink's Python workers inside this process (loopback mode). When a
job ends (or its tasks are cancelled for a restart), the Java side closes the Beam data stream
with CANCELLED "Multiplexer hanging up", and it can do so before the Python worker has marked its
own end of that stream closed (apache/beam#22643). Beam's reader thread then logs the closed
stream as a failure and re-raises it in a thread nobody joins: a traceback on stderr after a job
that succeeded, and a failed test under pytest's unhandled-thread-exception check.

The job's outcome is decided and reported by the Java side, so this one exception, from that one
thread, says nothing the job does not already say; `install()` reduces it to one debug line and
passes every other thread exception and log record on unchanged.
"""
from __future__ import annotations

import logging
import threading

_LOG = logging.getLogger(__name__)

# Names from Beam's worker (apache_beam/runners/worker/data_plane.py) and its Java multiplexer.
READER_THREAD = "read_grpc_client_inputs"
DATA_PLANE_LOGGER = "apache_beam.runners.worker.data_plane"
HANG_UP_DETAILS = "Multiplexer hanging up"

_installed = False
_lock = threading.Lock()


def is_teardown_hang_up(exc: BaseException | None) -> bool:
    """The Java side's close of the data stream: a gRPC error with status CANCELLED and the
    multiplexer's own words. Anything else (another status, other details) is not."""
    try:
        import grpc
    except ImportError:  # pragma: no cover - PyFlink depends on grpcio
        return False
    if not isinstance(exc, grpc.RpcError):
        return False
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if not callable(code) or not callable(details):
        return False
    return code() == grpc.StatusCode.CANCELLED and HANG_UP_DETAILS in (details() or "")


class _HangUpLogFilter(logging.Filter):
    """Drops the data plane's 'Failed to read inputs' record when its cause is the hang-up."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not is_teardown_hang_up(exc)


def install() -> None:
    """Idempotent. Chains to the thread exception hook in place when first called (pytest's, in
    the tests), so every other exception still reaches it."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = threading.excepthook

        def hook(args: threading.ExceptHookArgs) -> None:
            thread = args.thread
            if thread is not None and thread.name == READER_THREAD and is_teardown_hang_up(args.exc_value):
                _LOG.debug("the Java side closed the Beam data stream first at a job's end "
                           "(apache/beam#22643); the job's outcome is the Java side's")
                return
            previous(args)

        threading.excepthook = hook
        logging.getLogger(DATA_PLANE_LOGGER).addFilter(_HangUpLogFilter())
        _installed = True
