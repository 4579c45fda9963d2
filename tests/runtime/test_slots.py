"""A worker process's slots (``agents.runtime.slots``): at most ``AGENT_WORKER_ACTIVE_RUNS`` runs execute at once, a
run waiting on its LLM gives its slot back, and the bound is soft (``AGENT_WORKER_ACTIVE_RUNS_WAIT_SECONDS``). The
runs of a real worker under the bound: ``tests/runtime/test_fleet.py`` (its box has one slot)."""

from __future__ import annotations

import threading
import time

import pytest

from agents.runtime.slots import ActiveRuns


@pytest.fixture
def slots(settings):
    settings.AGENT_WORKER_ACTIVE_RUNS = 2
    settings.AGENT_WORKER_ACTIVE_RUNS_WAIT_SECONDS = 30
    return ActiveRuns()


class Runner:
    """A thread that enters ``slots.active()`` and stays until ``leave`` (optionally inside ``waiting()``)."""

    def __init__(self, slots: ActiveRuns, *, wait_inside: bool = False) -> None:
        self.slots, self.wait_inside = slots, wait_inside
        self.entered, self.waiting, self.back = threading.Event(), threading.Event(), threading.Event()
        self._leave, self._resume = threading.Event(), threading.Event()
        self.held: list[bool] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.slots.active():
            self.held.append(self.slots.held)
            self.entered.set()
            if self.wait_inside:
                with self.slots.waiting():
                    self.held.append(self.slots.held)
                    self.waiting.set()
                    self._resume.wait(30)
                self.held.append(self.slots.held)
                self.back.set()
            self._leave.wait(30)

    def resume(self) -> None:
        self._resume.set()

    def leave(self) -> None:
        self._resume.set()
        self._leave.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_at_most_the_bound_execute_at_once_and_the_next_one_starts_when_one_leaves(slots):
    first, second = Runner(slots), Runner(slots)
    assert first.entered.wait(5) and second.entered.wait(5)
    third = Runner(slots)
    assert not third.entered.wait(0.3)  # both slots are taken

    first.leave()

    assert third.entered.wait(5)
    assert [first.held, second.held, third.held] == [[True], [True], [True]]
    second.leave()
    third.leave()


def test_a_run_waiting_on_its_llm_gives_its_slot_back_and_takes_one_again_after(slots):
    waiting = Runner(slots, wait_inside=True)
    other = Runner(slots)
    assert waiting.waiting.wait(5) and other.entered.wait(5)
    third = Runner(slots)
    assert third.entered.wait(5)  # the waiting run's slot

    waiting.resume()
    assert not waiting.back.wait(0.3)  # back from its wait, it queues for a slot like any run
    other.leave()

    assert waiting.back.wait(5)
    assert waiting.held == [True, False, True]
    waiting.leave()
    third.leave()


def test_the_bound_is_soft_a_run_goes_on_without_a_slot_after_the_wait(slots, settings):
    settings.AGENT_WORKER_ACTIVE_RUNS = 1
    settings.AGENT_WORKER_ACTIVE_RUNS_WAIT_SECONDS = 0.2
    stuck = Runner(slots)  # agent code blocking while it holds its slot
    assert stuck.entered.wait(5)

    started = time.monotonic()
    late = Runner(slots)

    assert late.entered.wait(5)
    assert time.monotonic() - started >= 0.2
    assert late.held == [False]
    late.leave()
    stuck.leave()
    assert Runner(slots).entered.wait(5)  # the slot was given back: the next run takes it at once


def test_outside_a_run_waiting_does_nothing_and_nesting_holds_one_slot(slots, settings):
    settings.AGENT_WORKER_ACTIVE_RUNS = 1
    with slots.waiting():
        assert not slots.held
    with slots.active():
        with slots.active():  # the inner block is part of the outer one
            assert slots.held
        assert slots.held
    assert not slots.held
    assert Runner(slots).entered.wait(5)


def test_zero_is_no_bound(slots, settings):
    settings.AGENT_WORKER_ACTIVE_RUNS = 0
    runners = [Runner(slots) for _ in range(5)]
    assert all(runner.entered.wait(5) for runner in runners)
    assert all(runner.held == [False] for runner in runners)
    for runner in runners:
        runner.leave()
