"""Run code in real threads against PostgreSQL, released together by a barrier."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection


def run_concurrently(count: int, target: Callable[[int], Any], *, timeout: float = 120) -> list[Any]:
    """Run ``target(index)`` in ``count`` threads started together; each closes its DB connection.

    Returns, per index, what ``target`` returned or the exception it raised. Fails the test when a
    thread is still running after ``timeout`` seconds.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = target(index)
        except BaseException as exc:  # noqa: BLE001 - the caller inspects what each thread got
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results


def failures(results: list[Any]) -> list[BaseException]:
    """The exceptions among ``run_concurrently``'s results."""
    return [result for result in results if isinstance(result, BaseException)]
