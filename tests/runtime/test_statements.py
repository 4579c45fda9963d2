"""SQL statements per step on PostgreSQL (``CaptureQueriesContext``), the run executed in this process against the
local stub, whatever the length of the run (the count of a 4-step run minus a 1-step run's, divided by 3).

A loop step (one LLM call, then one allowed read-tool call) costs 3: the LLM step's one statement
(``trace.step_record``), the tool's own read (``read_context``: the context's current version with its context) and
the tool step's one statement; the stop
check before the next call rides on the tool step's ``RETURNING``. A plain agent class's LLM step costs 2: the step
and its checkpoint. The limits below allow one more, for a stop check that cannot ride (a step boundary more than
``STOP_CHECK_FRESH_SECONDS`` after the previous step, on a loaded machine). A transactional outbox's event insert
joins the step's own statement, so these hold with it."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from agents import counters
from agents.contexts import services as contexts
from agents.runtime import executor
from agents.runtime import services as runtime

from .harness import answer, reply, tool_call
from .support import calls_agent, fresh, loop_agent, platform_tool, price_model

pytestmark = pytest.mark.django_db(transaction=True)

#: Statements of one loop step (an LLM call and an allowed read-tool call), and of a plain class's LLM step.
LOOP_STEP_MAX = 4
PLAIN_STEP_MAX = 3


@pytest.fixture
def in_process(stub, monkeypatch):
    """Runs execute here (``executor.execute_run``), their Celery messages dropped, the LLM calls going to the stub."""
    monkeypatch.setattr(runtime, "_send", lambda *args: None)
    with override_settings(AGENT_LLM_PROVIDER="openai", AGENT_LLM_API_URL=stub.base_url, AGENT_LLM_API_KEY="k"):
        yield


def _statements(agent, instruction: str) -> list[str]:
    run, _ = runtime.run_create(agent=agent, instruction=instruction)
    with CaptureQueriesContext(connection) as queries:
        assert executor.execute_run(run.pk, worker="here") == "succeeded", fresh(run).error_message
    return [q["sql"] for q in queries.captured_queries]


def test_a_loop_step_costs_at_most_four_statements(project, stub, in_process):
    price_model()
    context, _ = contexts.context_get_or_create(project=project, name="notes")
    contexts.context_write(context, {"note": "hello"})
    agent = loop_agent(project, [platform_tool("read_context", "allow")], max_steps=10)

    def script(reads: int) -> None:
        stub.script(*[reply(tool_calls=[tool_call("read_context", {"name": "notes"})]) for _ in range(reads)],
                    reply("done"))

    script(1)
    _statements(agent, "warm up")  # the price, the tool's first look-ups
    script(1)
    short = _statements(agent, "one read")
    script(4)
    long = _statements(agent, "four reads")

    per_step = (len(long) - len(short)) / 3
    assert per_step <= LOOP_STEP_MAX, "\n".join(long)
    assert not [sql for sql in long if "modelprice" in sql.lower()], "prices come from the process's cache"


def test_a_warm_process_compiles_no_select_for_a_loop_run_on_a_new_thread(project, stub, in_process, compiles):
    """The run's reads (its agent and the run locked at the claim and the end, what goes before it, the tool's
    context read, the next run's look-up) reuse the SQL compiled for the process's first run
    (``syndarix.db.fetch_compiled``), on whichever thread a run lands (the Celery threads pool starts a new one for
    nearly every run of a burst): a query whose parameters stop matching would compile on every run again."""
    context, _ = contexts.context_get_or_create(project=project, name="notes")
    contexts.context_write(context, {"note": "hello"})
    agent = loop_agent(project, [platform_tool("read_context", "allow")], max_steps=10)
    stub.script(reply(tool_calls=[tool_call("read_context", {"name": "notes"})]), reply("done"))
    _statements(agent, "warm up")
    stub.script(*[reply(tool_calls=[tool_call("read_context", {"name": "notes"})]) for _ in range(2)], reply("done"))
    run, _ = runtime.run_create(agent=agent, instruction="two reads")
    compiles.clear()
    outcome = []

    def on_a_new_thread() -> None:
        try:
            outcome.append(executor.execute_run(run.pk, worker="here"))
        finally:
            connection.close()

    thread = threading.Thread(target=on_a_new_thread)
    thread.start()
    thread.join(60)
    assert (outcome, compiles) == (["succeeded"], [])


def test_a_plain_agent_class_llm_step_costs_at_most_three_statements(project, stub, in_process):
    price_model()
    agent = calls_agent(project, calls=4)
    one = calls_agent(project, calls=1, name="once")
    stub.script(reply("warm"))
    _statements(one, "warm up")
    stub.script(reply("a"))
    short = _statements(one, "one call")
    stub.script(*[reply(str(n)) for n in range(4)])
    long = _statements(agent, "four calls")

    per_step = (len(long) - len(short)) / 3
    assert per_step <= PLAIN_STEP_MAX, "\n".join(long)


def test_a_saved_price_counts_from_the_next_call_on(project, stub, in_process):
    agent = calls_agent(project, calls=1)
    stub.script(reply("free", usage=(1000, 0)))
    run, _ = runtime.run_create(agent=agent, instruction="free")
    executor.execute_run(run.pk, worker="here")
    assert fresh(run).cost == 0  # no price yet (cached as "none" in this process)

    price_model(input_usd="1", output_usd="1")
    stub.script(reply("paid", usage=(1000, 0)))
    run, _ = runtime.run_create(agent=agent, instruction="paid")
    executor.execute_run(run.pk, worker="here")

    assert str(fresh(run).cost) == "0.001000"


def test_an_unpriced_step_and_an_unusable_answer_add_no_statement(project, stub, in_process):
    """A model without a price: its tokens count as unpriced (run, project shard) in the step's own statement. An
    empty answer is one step of its own (one statement, its usage and raw answer in it) before the nudged retry."""
    agent = calls_agent(project, calls=4)
    one = calls_agent(project, calls=1, name="once")
    stub.script(reply("warm"))
    _statements(one, "warm up")
    stub.script(reply("a"))
    short = _statements(one, "one call")
    stub.script(*[reply(str(n)) for n in range(4)])
    long = _statements(agent, "four calls")
    assert (len(long) - len(short)) / 3 <= PLAIN_STEP_MAX, "\n".join(long)
    assert counters.project_metrics(project)["total_unpriced_tokens"] == 6 * 15

    empty = {"model": "rt-model", "usage": {"prompt_tokens": 20, "completion_tokens": 1},
             "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]}
    stub.script(answer(empty), reply("b"))
    nudged = _statements(one, "one call, asked twice")
    assert len(nudged) - len(short) <= 2, "\n".join(nudged)  # its step, and a stop check that could not ride
    assert counters.project_metrics(project)["total_unpriced_tokens"] == 7 * 15 + 21
