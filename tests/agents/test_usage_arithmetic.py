"""Usage counters add exactly past 32 bits, whatever the statement cache of the connection: the same bounded
increment run again and again on one connection (as a pooled connection would) never truncates its amount."""

from __future__ import annotations

import pytest

from agents.services import usage_increment

pytestmark = pytest.mark.django_db


def test_increments_past_two_to_the_31_add_exactly(agent):
    total = 0
    for tokens in (5, 7, 11, 2**31 - 1, 2**31 + 10, 2**40, 3):  # small ones first, as a prepared statement sees them
        usage_increment(agent.pk, tokens=tokens)
        total += tokens
        agent.refresh_from_db(fields=["tokens_used"])
        assert agent.tokens_used == total
