from agents import services
from agents.choices import TerminationReason

from ._base import LifecycleCommand


class Command(LifecycleCommand):
    help = (
        "Terminate agents by id for good with agents.services.agent_terminate (clears session and task). "
        "An agent that is already terminated exits non-zero."
    )
    verb = "terminate"
    done = "terminated"

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--termination-reason",
            choices=TerminationReason.values,
            default=TerminationReason.USER,
            help="Stored on the agent (default: user).",
        )

    def perform(self, agent, *, actor, reason, options):
        return services.agent_terminate(
            agent, actor=actor, reason=reason, termination_reason=options["termination_reason"]
        )
