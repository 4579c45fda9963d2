"""A well-formed agent module: one class, registered by register_agents()."""

from agents.registry import BaseAgent


class EchoAgent(BaseAgent):
    slug = "echo"
    name = "Echo"
    description = "Repeats its task into memory."
    capabilities = ["echo"]
    config_schema = {"type": "object", "properties": {"times": {"type": "integer", "minimum": 1, "default": 2}}}

    def activate(self) -> None:
        self.memory["echo"] = [self.agent.current_task] * self.resolved_config["times"]


def register_agents(registry) -> None:
    registry.register(EchoAgent)
