"""An agent module without register_agents()."""

from agents.registry import BaseAgent


class OrphanAgent(BaseAgent):
    slug = "orphan"
    name = "Orphan"
