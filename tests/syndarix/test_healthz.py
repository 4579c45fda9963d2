"""``GET /healthz``: the liveness probe (and the fleet benchmark's bare-Django ceiling) does no I/O."""

import pytest
from django.test import Client


@pytest.mark.django_db
def test_healthz_answers_ok_without_touching_the_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
