"""Build kit routes (agent templates, revisions, inspect, playground)."""

urlpatterns: list = []
