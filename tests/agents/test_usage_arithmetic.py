"""Usage counters add exactly past 32 bits, whatever the statement cache of the connection: the same bounded
increment run again and again on one connection (as a pooled connection would) never truncates its amount."""

from __future__ import annotations

import pytest

from agents.contexts import services as contexts
from agents.models import AgentContextVersion
from agents.services import usage_increment

pytestmark = pytest.mark.django_db


def test_increments_past_two_to_the_31_add_exactly(agent):
    total = 0
    for tokens in (5, 7, 11, 2**31 - 1, 2**31 + 10, 2**40, 3):  # small ones first, as a prepared statement sees them
        usage_increment(agent.pk, tokens=tokens)
        total += tokens
        agent.refresh_from_db(fields=["tokens_used"])
        assert agent.tokens_used == total


def test_a_filter_past_two_to_the_32_matches_no_small_number(project, user):
    """A 32-bit column compared with a number past 2^32 (a user's version number, say) matches nothing: the
    parameter is never truncated to a small number that exists (``syndarix.db.send_integers_whole``)."""
    context = contexts.context_create(project=project, name="plan", data={"goal": "ship"}, actor=user)
    versions = AgentContextVersion.objects.filter(context=context)
    assert versions.filter(version=1).exists()
    for _ in range(3):  # past the prepare threshold of the connection as well
        assert not versions.filter(version=2**32 + 1).exists()
        assert not versions.filter(version__in=[2**32 + 1]).exists()
