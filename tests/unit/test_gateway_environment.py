"""The environment PyFlink's gateway is launched from (`scanner_job.gateway_environment`)."""
from __future__ import annotations

import os

import pytest
from pyflink.pyflink_gateway_server import find_java_executable

from pipelines.scanner_job import gateway_environment

pytestmark = pytest.mark.unit


def test_an_empty_java_home_is_taken_as_unset_as_flinks_scripts_take_it(monkeypatch):
    monkeypatch.setenv("JAVA_HOME", "")
    assert find_java_executable() == "bin/java"       # PyFlink's launcher: a relative path
    gateway_environment()
    assert "JAVA_HOME" not in os.environ
    assert find_java_executable() == "java"           # the one on PATH


def test_a_set_java_home_is_kept_and_the_loopback_workers_flag_is_dropped(monkeypatch, tmp_path):
    env = {"JAVA_HOME": str(tmp_path), "PYFLINK_GATEWAY_DISABLED": "true", "PATH": "/usr/bin"}
    gateway_environment(env)
    assert env == {"JAVA_HOME": str(tmp_path), "PATH": "/usr/bin"}
