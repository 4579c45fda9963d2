"""gunicorn's settings file, read from the working directory: the hooks of prometheus-client's multiprocess mode.

With ``PROMETHEUS_MULTIPROC_DIR`` set, the workers' metrics live in files of that directory and ``/metrics`` adds them
up: the master empties it before the first worker starts, and forgets the live gauges of each worker that exits.
Without it the hooks do nothing. Command-line options still apply (``gunicorn syndarix.wsgi -w 4 -b ...``).
"""


def on_starting(server) -> None:
    from syndarix.metrics import wipe_multiprocess_dir

    wipe_multiprocess_dir()


def child_exit(server, worker) -> None:
    from syndarix.metrics import process_dead

    process_dead(worker.pid)
