"""How the hostile corpus counts failed checkpoints (benchmarks/hostile.py): from the
JobManager's own log lines (as Flink 2.2's CheckpointFailureManager writes them), a trigger
refused while a task was still starting is not a failure, nor a checkpoint aborted by the job's
own stop with a savepoint; anything else is, with its reason."""
from __future__ import annotations

from benchmarks.hostile import CheckpointLog, JobProbe

JOB = "c367c0a32884692e9d68d36503dd2dbf"
REFUSED = (f"2026-12-02 18:05:27,022 INFO  org.apache.flink.runtime.checkpoint.CheckpointFailureManager [] - "
           f"Failed to trigger checkpoint for job {JOB} since Checkpoint triggering task Source: inputs_kafka[1] "
           f"-> Calc[2] (1/1) of job {JOB} is not being executed at the moment. Aborting checkpoint. "
           "Failure reason: Not all required tasks are currently running..")
EXPIRED = (f"2026-12-02 18:09:01,100 WARN  org.apache.flink.runtime.checkpoint.CheckpointFailureManager [] - "
           f"Failed to trigger or complete checkpoint 7 for job {JOB}. (0 consecutive failed attempts so far)\n"
           "org.apache.flink.runtime.checkpoint.CheckpointException: Checkpoint expired before completing.\n"
           "\tat org.apache.flink.runtime.checkpoint.CheckpointCoordinator$CheckpointCanceller.run(...)")
SUSPENDED = (f"2026-12-06 23:03:02,471 WARN  org.apache.flink.runtime.checkpoint.CheckpointFailureManager [] - "
             f"Failed to trigger or complete checkpoint 8 for job {JOB}. (0 consecutive failed attempts so far)\n"
             "org.apache.flink.runtime.checkpoint.CheckpointException: Checkpoint Coordinator is suspending.")
OTHER = ("2026-12-02 18:05:26,220 INFO  org.apache.flink.runtime.checkpoint.CheckpointCoordinator    [] - "
         "No checkpoint found during restore.")


def _probe(failed: int, failed_when_running: int) -> JobProbe:
    p = JobProbe(pid=0, rest_port=0)
    p.seen.update(failed=failed, failed_when_running=failed_when_running)
    return p


def test_refused_triggers_are_not_failures(tmp_path):
    (tmp_path / "flink-root-python-host.log").write_text("\n".join([OTHER, REFUSED, REFUSED]) + "\n")
    log = CheckpointLog.read(tmp_path)
    assert len(log.refused_at_start) == 2 and log.real == ()
    # REST's cached statistics saw only one refusal before every task ran: the log decides
    assert _probe(failed=2, failed_when_running=1).failed_checkpoints(log) == (0, 2)


def test_a_real_failure_counts_with_its_reason(tmp_path):
    (tmp_path / "flink-root-python-host.log").write_text("\n".join([REFUSED, EXPIRED]) + "\n")
    log = CheckpointLog.read(tmp_path)
    assert log.real == ("Checkpoint expired before completing.",)
    assert _probe(failed=2, failed_when_running=1).failed_checkpoints(log) == (1, 1)


def test_without_a_log_the_statistics_decide(tmp_path):
    assert CheckpointLog.read(tmp_path) is None
    assert _probe(failed=3, failed_when_running=1).failed_checkpoints(None) == (2, 1)


def test_a_checkpoint_aborted_by_the_stop_is_not_a_failure(tmp_path):
    """The corpus stops the job with a savepoint; a periodic checkpoint still in flight then is
    aborted with the coordinator's suspension (seen in a suite run), in the log and in REST's history."""
    (tmp_path / "flink-root-python-host.log").write_text("\n".join([REFUSED, REFUSED, SUSPENDED]) + "\n")
    log = CheckpointLog.read(tmp_path)
    assert log.real == () and log.ended_by_stop == ("Checkpoint Coordinator is suspending.",)
    probe = _probe(failed=3, failed_when_running=2)
    probe.failed_started[8] = "Checkpoint Coordinator is suspending."
    assert probe.failed_checkpoints(log) == (0, 2)
    # an expiry as well: that one counts
    (tmp_path / "flink-root-python-host.log").write_text("\n".join([REFUSED, SUSPENDED, EXPIRED]) + "\n")
    assert _probe(failed=3, failed_when_running=1).failed_checkpoints(CheckpointLog.read(tmp_path)) == (1, 1)
