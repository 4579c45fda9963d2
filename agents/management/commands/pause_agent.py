from agents import services

from ._base import LifecycleCommand


class Command(LifecycleCommand):
    help = (
        "Pause agents by id (idle, working or waiting → paused) with agents.services.agent_pause. "
        "An illegal transition exits non-zero with the reason."
    )
    verb = "pause"
    done = "paused"

    def perform(self, agent, *, actor, reason, options):
        return services.agent_pause(agent, actor=actor, reason=reason)
