"""``save_unique``: losing a unique race is a 400; any other integrity error is not disguised."""

from __future__ import annotations

import pytest
from django.db import IntegrityError

from projects.models import Workspace
from syndarix.db import save_unique
from syndarix.exceptions import InvalidInput
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_a_taken_value_becomes_invalid_input_and_the_transaction_stays_usable():
    WorkspaceFactory(slug="taken")
    with pytest.raises(InvalidInput) as info:
        save_unique(
            lambda: Workspace.objects.create(name="x", slug="taken"),
            taken=lambda: Workspace.objects.filter(slug="taken").exists(), field="slug", message="Slug taken.",
        )
    assert (info.value.code, info.value.field, info.value.message) == ("unique", "slug", "Slug taken.")
    assert Workspace.objects.count() == 1  # the savepoint rolled back; queries still work


def test_another_integrity_error_propagates():
    with pytest.raises(IntegrityError):
        save_unique(
            lambda: Workspace.objects.create(name=None, slug="fresh"),
            taken=lambda: Workspace.objects.filter(slug="fresh").exists(), field="slug", message="Slug taken.",
        )
    assert not Workspace.objects.exists()


def test_a_successful_write_returns_its_result():
    created = save_unique(lambda: Workspace.objects.create(name="x", slug="x"), taken=lambda: True, field="slug",
                          message="never")
    assert Workspace.objects.get(slug="x") == created
