"""The orjson renderer writes exactly what DRF's JSONRenderer writes."""

from __future__ import annotations

import datetime
import decimal
import uuid

import pytest
from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer as DRFJSONRenderer

from agents.choices import AgentStatus
from syndarix.api.renderers import JSONRenderer

UTC = datetime.UTC
VALUES = [
    {"id": uuid.UUID("12345678-1234-5678-1234-567812345678"), "status": AgentStatus.PAUSED, "n": 3, "ok": True},
    {"at": datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "day": datetime.date(2026, 1, 2),
     "time": datetime.time(3, 4, 5), "span": datetime.timedelta(seconds=90)},
    {"cost": decimal.Decimal("1.250000"), "lazy": gettext_lazy("Not found."), "none": None, "float": 0.1},
    {"text": "naïve — ✓ \u2028 line \u2029 para \" quote \\ slash </script>", "nested": [[{"a": []}], {}]},
    {"big": 2**70, "small": -(2**63)},  # beyond 64 bits: DRF's encoder writes it
    {1: "a non-string key"},
    [],
    "plain",
]


@pytest.mark.parametrize("value", VALUES)
def test_the_same_bytes_as_drf(value):
    assert JSONRenderer().render(value) == DRFJSONRenderer().render(value)


def test_indented_output_is_drfs():
    value = {"a": [1, 2], "b": {"c": None}}
    media = "application/json; indent=4"
    assert JSONRenderer().render(value, media) == DRFJSONRenderer().render(value, media)
    assert JSONRenderer().render(None) == b""
