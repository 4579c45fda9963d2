"""An agent module that claims a built-in's slug."""

from agents.registry import BaseAgent


class AnotherReviewer(BaseAgent):
    slug = "reviewer"
    name = "Another reviewer"


def register_agents(registry) -> None:
    registry.register(AnotherReviewer)
