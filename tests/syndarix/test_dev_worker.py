"""The development worker of `make run` (Procfile.dev) keeps a stable name and stops at once on Ctrl-C."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from celery.exceptions import WorkerShutdown

from syndarix import dev_worker

ROOT = Path(__file__).resolve().parents[2]


def procfile_dev() -> dict[str, list[str]]:
    lines = [line for line in (ROOT / "Procfile.dev").read_text().splitlines() if line and not line.startswith("#")]
    return {name: shlex.split(command) for name, command in (line.split(":", 1) for line in lines)}


def test_procfile_dev_runs_web_worker_and_beat_with_a_named_quick_stopping_worker():
    processes = procfile_dev()
    assert set(processes) == {"web", "worker", "beat"}
    worker = processes["worker"]
    assert "--hostname=dev@%h" in worker  # the same name at every start: its runs are found again
    assert worker[worker.index("--include") + 1] == "syndarix.dev_worker"


def test_a_warm_shutdown_leaves_the_broker_loop_and_a_cold_one_is_left_to_celery():
    with pytest.raises(WorkerShutdown) as raised:
        dev_worker.leave_the_broker_loop(sig="SIGTERM", how="Warm", exitcode=0)
    assert raised.value.code == 0
    dev_worker.leave_the_broker_loop(sig="SIGQUIT", how="Cold", exitcode=1)  # nothing raised


def test_the_stopped_worker_exits_without_the_interpreter_teardown(monkeypatch):
    calls = []
    monkeypatch.setattr(dev_worker.logging, "shutdown", lambda: calls.append("logs flushed"))
    monkeypatch.setattr(dev_worker.os, "_exit", lambda status: calls.append(f"exit {status}"))
    dev_worker.exit_at_once(sender=None)
    assert calls == ["logs flushed", "exit 0"]
