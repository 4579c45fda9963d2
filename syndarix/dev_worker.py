"""The development worker's quick stop (``Procfile.dev`` loads it with ``--include``); production workers never do.

Ctrl-C in ``make run`` sends the worker SIGTERM, a warm shutdown: tasks in progress finish, nothing new starts. Two
waits that matter on a laptop and not in production are cut:

- With the folder broker of ``make run``, the worker's loop polls for up to 2 s before it notices the shutdown;
  ``leave_the_broker_loop`` ends the wait at once by raising ``WorkerShutdown`` from the signal, which the worker
  handles as the warm shutdown it was about to do (as Celery did before version 5).
- Once the worker has stopped (its tasks done, its connections closed), ``exit_at_once`` ends the process without
  the interpreter's teardown, which takes seconds for a process that has loaded Django and every app.

A task cut off by what comes after the warm shutdown (honcho kills what still runs 5 s after SIGTERM) is delivered
again, and every task tolerates that (``docs/concepts/runs.md``).
"""

from __future__ import annotations

import logging
import os
import sys

from celery.exceptions import WorkerShutdown
from celery.signals import worker_shutdown, worker_shutting_down


@worker_shutting_down.connect
def leave_the_broker_loop(sig: str, how: str, exitcode: int, **kwargs) -> None:
    """On a warm shutdown (SIGTERM, the first Ctrl-C), stop waiting for the broker; ``WorkerShutdown`` is the
    worker's own way to begin the warm shutdown with ``exitcode``."""
    if how == "Warm":
        raise WorkerShutdown(exitcode)


@worker_shutdown.connect
def exit_at_once(**kwargs) -> None:
    """After the worker has stopped: flush the logs and the output, then exit with status 0."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
