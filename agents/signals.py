"""Lifecycle signals, sent after the transaction that caused them has committed.

Receivers (the agent-class registry's hooks, event publishers) never run inside the transition's
transaction and never see a state that was rolled back.

- ``agent_spawned(sender=AgentInstance, agent, actor)``
- ``agent_transitioned(sender=AgentInstance, agent, source, target, transition, actor)``
  ``source``/``target`` are status wire values; ``transition`` is the ``AgentTransition`` row.

One signal is sent inside the writing transaction instead, for receivers that register their own
``transaction.on_commit`` work (the webhook dispatcher's nudge):

- ``event_written(sender=Event, event)``: an outbox event was written (``agents.events.published``).
"""

from django.dispatch import Signal

agent_spawned = Signal()
agent_transitioned = Signal()
event_written = Signal()
