"""An agent module that fails to import."""

from agents.registry import NoSuchName  # noqa: F401


def register_agents(registry) -> None:
    raise AssertionError("never reached")
