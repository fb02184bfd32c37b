"""The loopback teardown filter (pipelines/worker_teardown.py), on a real gRPC stream over
loopback: a server that ends a stream the way Beam's Java multiplexer does is absorbed only on
Beam's reader thread; any other status, details or thread still reaches the previous hook."""
from __future__ import annotations

import logging
import threading
from concurrent import futures

import grpc
import pytest

from pipelines import worker_teardown

METHOD = "/zeroscan.test.Data/Stream"


def _server(code: grpc.StatusCode, details: str) -> tuple[grpc.Server, int]:
    def stream(request_iterator, context):
        yield b"one"
        context.abort(code, details)

    handler = grpc.method_handlers_generic_handler(
        "zeroscan.test.Data", {"Stream": grpc.stream_stream_rpc_method_handler(stream)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def _read_in_thread(port: int, thread_name: str) -> None:
    """Reads the stream to its end in a thread of that name, as Beam's reader does; lets the
    stream's error escape the thread."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.stream_stream(METHOD)(iter([b"in"]))

    def read():
        for _ in call:
            pass

    t = threading.Thread(target=read, name=thread_name, daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "the stream did not end"
    channel.close()


@pytest.fixture
def seen(monkeypatch):
    """The hook in place before the filter's (pytest's own in a real run), recording what
    reaches it; the filter installed afresh over it."""
    reached: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reached.append(args.exc_value))
    monkeypatch.setattr(worker_teardown, "_installed", False)
    logger = logging.getLogger(worker_teardown.DATA_PLANE_LOGGER)
    before = list(logger.filters)
    worker_teardown.install()
    yield reached
    logger.filters[:] = before


@pytest.mark.parametrize("code, details, thread, absorbed", [
    (grpc.StatusCode.CANCELLED, "Multiplexer hanging up", worker_teardown.READER_THREAD, True),  # the race itself
    (grpc.StatusCode.CANCELLED, "Multiplexer hanging up", "some-other-thread", False),  # not Beam's reader
    (grpc.StatusCode.CANCELLED, "client went away", worker_teardown.READER_THREAD, False),  # other words
    (grpc.StatusCode.UNAVAILABLE, "Multiplexer hanging up", worker_teardown.READER_THREAD, False),  # other status
    (grpc.StatusCode.INTERNAL, "worker crashed", worker_teardown.READER_THREAD, False),  # a real failure
])
def test_only_the_teardown_hang_up_on_the_reader_is_absorbed(seen, caplog, code, details, thread, absorbed):
    server, port = _server(code, details)
    try:
        with caplog.at_level(logging.DEBUG, logger=worker_teardown.__name__):
            _read_in_thread(port, thread)
    finally:
        server.stop(grace=None)
    said = [r for r in caplog.records if r.name == worker_teardown.__name__]
    if absorbed:   # raised, and reached the filter: its one debug line
        assert seen == [] and len(said) == 1 and "apache/beam#22643" in said[0].getMessage()
    else:
        assert len(seen) == 1 and isinstance(seen[0], grpc.RpcError) and said == []
        assert seen[0].code() == code


def test_other_exceptions_on_the_reader_thread_pass_on(seen):
    def boom():
        raise ValueError("not a gRPC error")

    t = threading.Thread(target=boom, name=worker_teardown.READER_THREAD)
    t.start()
    t.join()
    assert len(seen) == 1 and isinstance(seen[0], ValueError)


def test_install_is_idempotent(seen):
    hook = threading.excepthook
    logger = logging.getLogger(worker_teardown.DATA_PLANE_LOGGER)
    n = len(logger.filters)
    worker_teardown.install()
    assert threading.excepthook is hook and len(logger.filters) == n


def test_the_data_planes_failure_record_is_dropped_only_for_the_hang_up(seen, caplog):
    server, port = _server(grpc.StatusCode.CANCELLED, "Multiplexer hanging up")
    errors: list[BaseException] = []
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            for _ in channel.stream_stream(METHOD)(iter([b"in"])):
                pass
        except grpc.RpcError as e:
            errors.append(e)
        channel.close()
    finally:
        server.stop(grace=None)
    logger = logging.getLogger(worker_teardown.DATA_PLANE_LOGGER)
    with caplog.at_level(logging.ERROR, logger=worker_teardown.DATA_PLANE_LOGGER):
        try:
            raise errors[0]
        except grpc.RpcError:
            logger.exception("Failed to read inputs in the data plane.")
        try:
            raise RuntimeError("a real data plane failure")
        except RuntimeError:
            logger.exception("Failed to read inputs in the data plane.")
    records = [r for r in caplog.records if r.name == worker_teardown.DATA_PLANE_LOGGER]
    assert [r.exc_info[0] for r in records] == [RuntimeError]
