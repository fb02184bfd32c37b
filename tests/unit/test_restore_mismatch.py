"""A restore point that another plan of the job took: `job run` tells it from Flink's refusal
and says what to do, naming the folders to move aside; any other start failure is not taken for
it. (The whole path was run against a savepoint of an earlier version: README, "Using it".)"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipelines.scanner_job import plan_mismatch, restore_mismatch_help
from zeroscan.settings import Settings

pytestmark = pytest.mark.unit

# Flink 2.2's words, as `job run` received them (wrapped in the table API's exception).
REFUSED = ("org.apache.flink.table.api.TableException: Failed to execute sql\n"
           "Caused by: java.lang.IllegalStateException: Failed to rollback to checkpoint/savepoint "
           "file:/s/savepoints/savepoint-c41ccd-6eda5fd86c69. Cannot map checkpoint/savepoint state for operator "
           "71092178a472911df80ebf10bb458d08 to the new program, because the operator is not available in the new "
           "program. If you want to allow to skip this, you can set the --allowNonRestoredState option on the CLI.")


def test_flinks_refusal_is_told_apart():
    assert plan_mismatch(RuntimeError(REFUSED))
    assert not plan_mismatch(RuntimeError("Failed to execute sql\nCaused by: java.net.ConnectException: refused"))
    assert not plan_mismatch(RuntimeError("Failed to rollback to checkpoint/savepoint file:/s: no _metadata"))


def test_the_help_says_what_to_do_and_where(tmp_path):
    s = dataclasses.replace(Settings.from_env(), state_dir=tmp_path / "state", checkpoint_dir=None,
                            savepoint_dir=None)
    text = restore_mismatch_help("/s/savepoints/savepoint-1", s)
    assert text.startswith("cannot resume from /s/savepoints/savepoint-1: it holds state of an operator")
    assert "Nothing was read or written" in text
    assert "ZEROSCAN_FLINK_OPTS=execution.state-recovery.ignore-unclaimed-state=true" in text
    assert str(Path(tmp_path / "state" / "savepoints")) in text and str(Path(tmp_path / "state" / "checkpoints")) in text
    remote = dataclasses.replace(s, savepoint_dir="s3://bucket/sp", checkpoint_dir="s3://bucket/chk")
    assert "s3://bucket/sp and s3://bucket/chk aside" in restore_mismatch_help("s3://bucket/sp/savepoint-1", remote)
