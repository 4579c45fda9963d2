from agents import services

from ._base import LifecycleCommand


class Command(LifecycleCommand):
    help = (
        "Resume paused agents by id (paused → idle) with agents.services.agent_resume. "
        "An agent that is not paused exits non-zero with the reason."
    )
    verb = "resume"
    done = "resumed"

    def perform(self, agent, *, actor, reason, options):
        return services.agent_resume(agent, actor=actor, reason=reason)
