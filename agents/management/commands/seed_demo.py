"""``manage.py seed_demo``: demo data for a first look at Syndarix. Safe to run again."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError

from agents import services
from agents.choices import AgentStatus as S
from agents.choices import TerminationReason
from agents.contexts import services as contexts
from agents.exceptions import SERVICE_ERRORS, describe_error
from agents.models import AgentInstance, AgentType
from agents.registry import registry
from agents.runtime.services import run_create
from agents.services import agent_types_sync
from aiservices.models import ModelPrice
from projects.choices import IssueStatus, WorkspaceRole
from projects.models import Issue, Project, Workspace, WorkspaceMembership
from projects.selectors import auth_token_owner
from projects.services import auth_token_create

from ._base import dry_run_atomic

WORKSPACE = {"slug": "demo", "name": "Demo Workspace"}
USERS = {
    # username: (env var with the password, is superuser, workspace role); both are staff: they sign in to the admin
    "admin": ("SYNDARIX_DEMO_ADMIN_PASSWORD", True, WorkspaceRole.ADMIN),
    "operator": ("SYNDARIX_DEMO_OPERATOR_PASSWORD", False, WorkspaceRole.OPERATOR),
}
#: The group that gives a seeded user who is not a superuser the admin's model permissions its workspace role needs
#: (what it may do; its memberships say where): an operator works with agents, runs, contexts and issues, reads the
#: catalogs (agent types, templates, prices) and its own AI tool calls and API tokens, and manages no members.
ROLE_GROUPS = {
    WorkspaceRole.OPERATOR: ("Workspace operators", (
        "projects.view_workspace", "projects.view_workspacemembership",
        "projects.add_project", "projects.change_project", "projects.view_project",
        "projects.add_issue", "projects.change_issue", "projects.delete_issue", "projects.view_issue",
        "agents.view_agenttype", "agents.add_agentinstance", "agents.change_agentinstance",
        "agents.view_agentinstance", "agents.view_agenttransition",
        "agents.add_agentrun", "agents.change_agentrun", "agents.view_agentrun",
        "agents.add_agentcontext", "agents.change_agentcontext", "agents.delete_agentcontext",
        "agents.view_agentcontext", "agents.view_agentcontextversion",
        "buildkit.view_agenttemplate", "aiservices.view_aiservicecall", "aiservices.view_modelprice",
        "knox.view_authtoken", "knox.delete_authtoken",
    )),
}
#: The credentials-file entry holding the operator's API token (tokens are stored hashed: the file is the only
#: place that knows it). Usernames cannot contain ":", so it never clashes with a user's password line.
TOKEN_ENTRY = "operator:api-token"
PROJECTS = [
    {"slug": "storefront", "name": "Storefront relaunch",
     "description": "Rebuild the web shop: new checkout, faster search, a cleaner catalog."},
    {"slug": "mobile-app", "name": "Mobile app",
     "description": "Native iOS and Android apps for the shop, with offline browsing."},
]

_MODEL = {"type": "string", "minLength": 1,
          "description": "LLM used by the agent (default: the setting AGENT_LLM_MODEL)."}
_TEMPERATURE = {"type": "number", "minimum": 0, "maximum": 2, "description": "Sampling temperature."}
_MAX_TOKENS = {"type": "integer", "minimum": 256, "maximum": 200000, "description": "Most tokens per reply."}

AGENT_TYPES = [
    {
        "slug": "product-owner", "name": "Product owner",
        "description": "Turns goals into a prioritized backlog of stories with acceptance criteria.",
        "capabilities": ["requirements", "backlog", "acceptance-criteria"],
        "config_schema": {
            "type": "object",
            "properties": {
                "model": _MODEL, "temperature": _TEMPERATURE, "max_tokens": _MAX_TOKENS,
                "story_format": {"type": "string", "enum": ["user-story", "job-story"]},
                "max_backlog_items": {"type": "integer", "minimum": 1, "maximum": 500},
            },
            "additionalProperties": False,
        },
    },
    {
        "slug": "architect", "name": "Architect",
        "description": "Designs components and interfaces and reviews changes against them.",
        "capabilities": ["design", "review", "diagrams"],
        "config_schema": {
            "type": "object",
            "properties": {
                "model": _MODEL, "temperature": _TEMPERATURE, "max_tokens": _MAX_TOKENS,
                "diagram_format": {"type": "string", "enum": ["mermaid", "plantuml", "c4"]},
                "review_depth": {"type": "string", "enum": ["light", "standard", "deep"]},
            },
            "additionalProperties": False,
        },
    },
    {
        "slug": "engineer", "name": "Engineer",
        "description": "Implements stories as small, tested changes on a branch.",
        "capabilities": ["code", "tests", "refactoring"],
        "config_schema": {
            "type": "object",
            "properties": {
                "model": _MODEL, "temperature": _TEMPERATURE, "max_tokens": _MAX_TOKENS,
                "language": {"type": "string", "enum": ["python", "typescript", "kotlin", "swift"]},
                "max_files_per_change": {"type": "integer", "minimum": 1, "maximum": 50},
                "run_tests": {"type": "boolean"},
                "branch_prefix": {"type": "string", "pattern": "^[a-z0-9][a-z0-9/-]*$"},
            },
            "required": ["language"],
            "additionalProperties": False,
        },
    },
    {
        "slug": "qa", "name": "QA",
        "description": "Writes and runs tests, reports regressions with reproduction steps.",
        "capabilities": ["tests", "regression", "reports"],
        "config_schema": {
            "type": "object",
            "properties": {
                "model": _MODEL, "temperature": _TEMPERATURE,
                "framework": {"type": "string", "enum": ["pytest", "jest", "playwright", "xctest", "espresso"]},
                "coverage_target": {"type": "number", "minimum": 0, "maximum": 100},
                "flaky_retries": {"type": "integer", "minimum": 0, "maximum": 5},
            },
            "required": ["framework"],
            "additionalProperties": False,
        },
    },
]


@dataclass(frozen=True)
class DemoAgent:
    project: str
    agent_type: str
    name: str
    status: str
    config: dict
    task: str = ""
    tasks_done: int = 0  # working → idle cycles walked (and usage recorded) before the final status
    tokens_per_task: int = 0
    termination_reason: str = TerminationReason.USER


#: No agent is seeded ``working`` or ``waiting``: those states belong to a run a worker executes or a person answers,
#: and the demo's one run (below) gets there by itself.
AGENTS = [
    DemoAgent("storefront", "product-owner", "Backlog curator", S.PAUSED,
              {"story_format": "user-story"}, "Split the checkout epic into stories", 3, 18_000),
    DemoAgent("storefront", "architect", "Storefront architect", S.PAUSED,
              {"review_depth": "deep"},
              "Waiting for the payment provider's API review", 2, 42_000),
    DemoAgent("storefront", "engineer", "Checkout engineer", S.IDLE,
              {"language": "python", "run_tests": True, "branch_prefix": "checkout/"},
              "Validate shipping addresses in checkout", 4, 65_000),
    DemoAgent("storefront", "engineer", "Search engineer", S.IDLE, {"language": "python"},
              "", 2, 30_000),
    DemoAgent("storefront", "engineer", "Catalog engineer", S.PAUSED, {"language": "typescript"},
              "Migrate product images to the CDN", 1, 52_000),
    DemoAgent("storefront", "qa", "Regression tester", S.IDLE,
              {"framework": "playwright", "coverage_target": 85},
              "Run the checkout regression suite", 5, 12_000),
    DemoAgent("storefront", "engineer", "Legacy importer", S.TERMINATED, {"language": "python"},
              "", 2, 90_000, TerminationReason.SUPERSEDED),
    DemoAgent("mobile-app", "product-owner", "App product owner", S.IDLE, {"max_backlog_items": 60},
              "", 1, 15_000),
    DemoAgent("mobile-app", "architect", "Mobile architect", S.PAUSED,
              {"diagram_format": "c4"}, "Design the offline sync protocol", 1, 38_000),
    DemoAgent("mobile-app", "engineer", "iOS engineer", S.PAUSED, {"language": "swift"},
              "Waiting for design sign-off on the onboarding screens", 3, 47_000),
    DemoAgent("mobile-app", "engineer", "Android engineer", S.IDLE, {"language": "kotlin"},
              "", 0, 0),
    DemoAgent("mobile-app", "qa", "Release tester", S.TERMINATED, {"framework": "espresso"},
              "", 3, 25_000, TerminationReason.BUDGET),
    # Agents of the built-in classes (agents/registry/builtin.py): their lifecycle hooks fill short_term_memory.
    DemoAgent("storefront", "reviewer", "Pull-request reviewer", S.IDLE,
              {"strictness": "strict"}, "Review the checkout refactoring", 2, 21_000),
    DemoAgent("storefront", "builder", "Release builder", S.IDLE, {"language": "python"},
              "", 1, 33_000),
    DemoAgent("mobile-app", "tester", "Smoke tester", S.PAUSED, {"framework": "jest"},
              "Smoke-test the onboarding flow", 1, 9_000),
]

#: Final steps from IDLE to each status a demo agent may have (after the completed-task cycles).
FINAL_STEPS = {
    S.IDLE: [],
    S.PAUSED: [S.WORKING, S.PAUSED],
    S.TERMINATED: [S.TERMINATED],
}

#: USD per 1,000 tokens of the demo agents' recorded history (their past tasks, not calls of a model).
DEMO_PRICE_PER_1K = Decimal("0.0010")

#: USD per million tokens (prompt, completion): OpenAI's published prices of its small models, and the offline
#: provider at 0. A model the deployment serves that is not here is metered at 0 and shown as unpriced; add its
#: price in the admin (AI services › Model prices).
MODEL_PRICES = {
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "offline": (Decimal("0"), Decimal("0")),
}

#: The run queued for the demo: (project slug, agent name) and what it is asked to do.
DEMO_RUN_AGENT = ("storefront", "Release builder")
DEMO_RUN_INSTRUCTION = "Prepare the release notes for the storefront relaunch and record them in the notes context."

#: The first version of the storefront's shared ``notes`` context.
DEMO_NOTES = {
    "release": "2.0", "theme": "Storefront relaunch: new checkout, faster search, a cleaner catalog.",
    "open_questions": ["Which payment providers ship with 2.0?"],
}

ISSUES = [
    ("storefront", "Validate shipping addresses in checkout", IssueStatus.IN_PROGRESS, "Checkout engineer"),
    ("storefront", "Stories and acceptance criteria for gift cards", IssueStatus.IN_PROGRESS, "Backlog curator"),
    ("storefront", "Search ignores diacritics", IssueStatus.OPEN, "Search engineer"),
    ("storefront", "Review the payment provider integration", IssueStatus.IN_PROGRESS, "Storefront architect"),
    ("storefront", "Checkout regression suite", IssueStatus.IN_PROGRESS, "Regression tester"),
    ("storefront", "Import the legacy product catalog", IssueStatus.CLOSED, "Legacy importer"),
    ("storefront", "Dark mode for the storefront", IssueStatus.OPEN, None),
    ("mobile-app", "Onboarding screens", IssueStatus.IN_PROGRESS, "iOS engineer"),
    ("mobile-app", "Push notification opt-in", IssueStatus.OPEN, "Android engineer"),
    ("mobile-app", "Offline sync protocol", IssueStatus.OPEN, "Mobile architect"),
    ("mobile-app", "Release 2.0 checklist", IssueStatus.DONE, "Release tester"),
]


SINGULAR = {
    "users": "user", "workspaces": "workspace", "memberships": "membership", "projects": "project",
    "agent types": "agent type", "template revisions": "template revision", "agents": "agent", "issues": "issue",
    "API tokens": "API token", "model prices": "model price", "runs": "run", "contexts": "context", "groups": "group",
}


@dataclass
class Report:
    created: dict[str, int] = field(default_factory=dict)
    passwords: dict[str, str | None] = field(default_factory=dict)  # username → password (None: unknown)
    notes: list[str] = field(default_factory=list)

    def add(self, kind: str) -> None:
        self.created[kind] = self.created.get(kind, 0) + 1


class Command(BaseCommand):
    help = (
        "Load demo data: the 'demo' workspace with two projects, an 'admin' superuser and an 'operator' (staff, "
        "in the 'Workspace operators' group), their passwords from SYNDARIX_DEMO_ADMIN_PASSWORD / "
        "SYNDARIX_DEMO_OPERATOR_PASSWORD, else generated and kept in .demo-credentials, the operator's API token, "
        "four agent types with a first committed template plus the built-in agent classes' types, fifteen agents "
        "(idle, paused, terminated) with usage, issues assigned to them, the LLM price table and one queued run of "
        "the 'Release builder'. Idempotent: a second run creates nothing and prints the credentials again."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Show what would be created, then roll back.")
        parser.add_argument(
            "--credentials-file",
            default=str(Path(settings.BASE_DIR) / ".demo-credentials"),
            help="Where generated passwords are kept (default: .demo-credentials, git-ignored).",
        )

    def handle(self, *args, **options) -> None:
        self.verbosity = options["verbosity"]
        dry_run = options["dry_run"]
        credentials_path = Path(options["credentials_file"])
        stored = read_credentials(credentials_path)
        report = Report()
        try:
            with dry_run_atomic(dry_run):
                users = self.seed_users(report, stored)
                self.seed_groups(report, users)
                workspace = self.seed_workspace(report, users)
                projects = self.seed_projects(report, workspace, owner=users["admin"])
                agent_types = self.seed_agent_types(report, actor=users["admin"])
                agents = self.seed_agents(report, projects, agent_types, actor=users["admin"])
                self.seed_issues(report, projects, agents)
                self.seed_prices(report)
                self.seed_contexts(report, projects, actor=users["admin"])
                self.seed_runs(report, agents, actor=users["admin"])
                token = self.seed_token(report, users["operator"], stored)
        except SERVICE_ERRORS as exc:
            raise CommandError(f"Seeding failed: {describe_error(exc)}") from None
        known = {name: pw for name, pw in {**report.passwords, TOKEN_ENTRY: token}.items() if pw}
        if not dry_run and any(stored.get(name) != pw for name, pw in known.items()):
            write_credentials(credentials_path, {**stored, **known})
        self.print_summary(report, token, credentials_path, dry_run)

    # --- Seeding steps; each creates only what is missing. ---

    def created(self, report: Report, kind: str, label: str) -> None:
        report.add(kind)
        if self.verbosity >= 2:
            self.stdout.write(f"  created {SINGULAR.get(kind, kind)}: {label}")

    def seed_users(self, report: Report, stored: dict[str, str]) -> dict:
        User = get_user_model()
        users = {}
        for username, (env_var, is_superuser, _role) in USERS.items():
            from_env = os.environ.get(env_var) or None
            user = User.objects.filter(username=username).first()
            if user is None:
                password = from_env or stored.get(username) or secrets.token_urlsafe(12)
                make = User.objects.create_superuser if is_superuser else User.objects.create_user
                user = make(username=username, email=f"{username}@example.com", password=password, is_staff=True)
                self.created(report, "users", username)
            elif from_env and not user.check_password(from_env):
                user.set_password(from_env)
                user.save(update_fields=["password"])
                report.notes.append(f"Password of '{username}' set from {env_var}.")
                password = from_env
            else:
                candidate = from_env or stored.get(username)
                password = candidate if candidate and user.check_password(candidate) else None
                if password is None:
                    report.notes.append(
                        f"'{username}' exists with a password not recorded in the credentials file; "
                        f"set {env_var} and re-run, or use `manage.py changepassword {username}`."
                    )
            report.passwords[username] = password
            users[username] = user
        return users

    def seed_groups(self, report: Report, users: dict) -> None:
        """Every seeded user signs in to the admin: staff, and in the group of its role (``ROLE_GROUPS``) unless a
        superuser. The group's permissions are set to exactly the listed ones on every run."""
        for username, (_env, is_superuser, role) in USERS.items():
            user = users[username]
            if not user.is_staff:
                user.is_staff = True
                user.save(update_fields=["is_staff"])
            if is_superuser or role not in ROLE_GROUPS:
                continue
            name, perms = ROLE_GROUPS[role]
            group, created = Group.objects.get_or_create(name=name)
            if created:
                self.created(report, "groups", name)
            group.permissions.set(permissions(perms))
            user.groups.add(group)

    def seed_token(self, report: Report, operator, stored: dict[str, str]) -> str:
        """The operator's API token kept in the credentials file while it still works, else a new one.

        A token expires (``AUTH_TOKEN_TTL_HOURS``) and is revoked by a password change or a logout; then a new
        one is created and kept instead.
        """
        kept = stored.get(TOKEN_ENTRY)
        if kept and auth_token_owner(kept) == operator:
            return kept
        _row, token = auth_token_create(user=operator)
        self.created(report, "API tokens", "of operator")
        return token

    def seed_workspace(self, report: Report, users: dict) -> Workspace:
        workspace, created = Workspace.objects.get_or_create(
            slug=WORKSPACE["slug"], defaults={"name": WORKSPACE["name"]}
        )
        if created:
            self.created(report, "workspaces", workspace.name)
        for username, (_env, _su, role) in USERS.items():
            _, created = WorkspaceMembership.objects.get_or_create(
                workspace=workspace, user=users[username], defaults={"role": role}
            )
            if created:
                self.created(report, "memberships", f"{username} ({role})")
        return workspace

    def seed_projects(self, report: Report, workspace: Workspace, *, owner) -> dict[str, Project]:
        projects = {}
        for spec in PROJECTS:
            project, created = Project.objects.get_or_create(
                workspace=workspace, slug=spec["slug"],
                defaults={"name": spec["name"], "description": spec["description"], "owner": owner},
            )
            if created:
                self.created(report, "projects", project.name)
            projects[spec["slug"]] = project
        return projects

    def seed_agent_types(self, report: Report, *, actor) -> dict[str, AgentType]:
        """The four demo types (each with a first committed template) and the built-in classes' types."""
        agent_types = {}
        for spec in AGENT_TYPES:
            agent_type, created = AgentType.objects.get_or_create(
                slug=spec["slug"], defaults={k: v for k, v in spec.items() if k != "slug"}
            )
            if created:
                agent_type.full_clean()  # the schemas above must be valid JSON Schemas
                self.created(report, "agent types", agent_type.slug)
            if not agent_type.revisions.exists():
                services.agent_type_commit_revision(
                    agent_type, template=demo_template(agent_type), message="First template", author=actor
                )
                self.created(report, "template revisions", agent_type.slug)
            agent_types[spec["slug"]] = agent_type
        for slug in agent_types_sync(registry).created:
            self.created(report, "agent types", slug)
        agent_types.update({t.slug: t for t in AgentType.objects.filter(handler__in=registry.slugs())})
        return agent_types

    def seed_agents(self, report: Report, projects, agent_types, *, actor) -> dict[tuple[str, str], AgentInstance]:
        """Spawn each missing demo agent and walk it to its status through real transitions,
        recording usage for every completed task on the way."""
        agents = {}
        existing = {
            (a.project_id, a.name): a for a in AgentInstance.objects.filter(project__in=projects.values())
        }
        for spec in AGENTS:
            project = projects[spec.project]
            agent = existing.get((project.pk, spec.name))
            if agent is None:
                agent = self.walk(
                    services.agent_spawn(
                        project=project, agent_type=agent_types[spec.agent_type], name=spec.name,
                        config=spec.config, actor=actor,
                    ),
                    spec,
                    actor,
                )
                self.created(report, "agents", f"{spec.name} ({agent.status})")
            agents[(spec.project, spec.name)] = agent
        return agents

    def walk(self, agent: AgentInstance, spec: DemoAgent, actor) -> AgentInstance:
        price = DEMO_PRICE_PER_1K
        for n in range(spec.tasks_done):
            agent = services.agent_transition(agent, S.WORKING, actor=actor, reason=f"demo task {n + 1}")
            tokens = spec.tokens_per_task + 1_000 * n
            services.agent_record_usage(agent, tokens=tokens, cost=price * tokens / 1000, tasks_completed=1)
            agent = services.agent_transition(agent, S.IDLE, actor=actor, reason=f"demo task {n + 1} done")
        for step in FINAL_STEPS[spec.status]:
            if step == S.TERMINATED:
                agent = services.agent_terminate(
                    agent, actor=actor, reason="demo: retired", termination_reason=spec.termination_reason
                )
            else:
                agent = services.agent_transition(agent, step, actor=actor, reason="demo")
        if spec.task and spec.status != S.TERMINATED:
            agent = services.agent_update(agent, actor=actor, data={"current_task": spec.task})
        return agent

    def seed_issues(self, report: Report, projects, agents) -> None:
        for project_slug, title, status, agent_name in ISSUES:
            assigned = agents[(project_slug, agent_name)] if agent_name else None
            issue, created = Issue.objects.get_or_create(
                project=projects[project_slug], title=title, defaults={"status": status, "assigned_agent": assigned}
            )
            if created:
                self.created(report, "issues", title)

    def seed_prices(self, report: Report) -> None:
        """The LLM price table (USD per million tokens): ``MODEL_PRICES``."""
        for model, (input_price, output_price) in MODEL_PRICES.items():
            _, created = ModelPrice.objects.get_or_create(
                model=model, defaults={"input_usd_per_mtok": input_price, "output_usd_per_mtok": output_price}
            )
            if created:
                self.created(report, "model prices", model)

    def seed_contexts(self, report: Report, projects, *, actor) -> None:
        """The storefront's shared ``notes`` context, which the demo run reads and writes."""
        project = projects[DEMO_RUN_AGENT[0]]
        if not project.contexts.filter(name="notes", instance__isnull=True).exists():
            contexts.context_create(project=project, name="notes", data=DEMO_NOTES, actor=actor,
                                    change_description="Seeded by the demo")
            self.created(report, "contexts", "notes")

    def seed_runs(self, report: Report, agents, *, actor) -> None:
        """Queue the demo run once: the builder's tool loop reaches a write that waits for approval in the admin."""
        builder = agents[DEMO_RUN_AGENT]
        if builder.runs.exists() or builder.status == S.TERMINATED:
            return
        run, _ = run_create(agent=builder, instruction=DEMO_RUN_INSTRUCTION, actor=actor)
        self.created(report, "runs", f"{builder.name}: {run.pk}")
        report.notes.append(
            f"A run of '{builder.name}' is queued; the worker started by `make run` executes it and it waits for "
            "your approval under Agents › Agent runs (or on the admin index, 'Waiting for you')."
        )

    # --- Output. ---

    def print_summary(self, report: Report, token: str, credentials_path: Path, dry_run: bool) -> None:
        if self.verbosity < 1:
            return
        write = self.stdout.write
        if report.created:
            made = ", ".join(
                f"{count} {kind if count != 1 else SINGULAR.get(kind, kind)}" for kind, count in report.created.items()
            )
            if dry_run:
                write(f"Dry run: would create {made}. Nothing was changed.")
                return
            write(self.style.SUCCESS(f"Demo data created: {made}."))
        else:
            write(self.style.SUCCESS("Demo data already present; nothing to create."))
        for note in report.notes:
            write(self.style.WARNING(note))
        write("")
        write(self.style.MIGRATE_HEADING("Sign in to the admin at http://127.0.0.1:8000/admin/"))
        for username in USERS:
            password = report.passwords.get(username) or "(unknown, see above)"
            write(f"  {username:<9} password: {password}")
        write(f"  operator API token: {token}")
        write(f'  curl -H "Authorization: Token {token}" http://127.0.0.1:8000/api/v1/projects')
        if any(report.passwords.values()):
            write(f"Credentials are kept in {credentials_path} (git-ignored); a re-run prints them again.")


def permissions(names) -> list[Permission]:
    """The ``Permission`` rows of ``"app_label.codename"`` names; ``CommandError`` naming any that do not exist."""
    pairs = {tuple(name.split(".", 1)) for name in names}
    candidates = Permission.objects.filter(
        content_type__app_label__in={app for app, _ in pairs}, codename__in={codename for _, codename in pairs}
    ).select_related("content_type")
    rows = [p for p in candidates if (p.content_type.app_label, p.codename) in pairs]
    missing = pairs - {(p.content_type.app_label, p.codename) for p in rows}
    if missing:
        raise CommandError(f"Unknown permissions: {', '.join(sorted('.'.join(m) for m in missing))}.")
    return rows


def demo_template(agent_type: AgentType) -> dict:
    """A small valid ``parameters.agent`` document for a demo agent type."""
    return {
        "instructions": {"agents_md": f"# {agent_type.name}\n\n{agent_type.description}"},
        "llm": {"extras": {}},
        "tools": [{"type": "platform", "op": "query_agents", "permission": "allow"}],
        "skills": [],
        "mcps": [],
        "sandbox": {"kind": "container", "permissions": {"write_files": "deny", "execute_code": "ask"}},
    }


def read_credentials(path: Path) -> dict[str, str]:
    """``username=password`` lines of the credentials file (missing file: empty)."""
    if not path.exists():
        return {}
    pairs = {}
    for line in path.read_text().splitlines():
        name, sep, password = line.partition("=")
        if sep and not line.startswith("#"):
            pairs[name.strip()] = password.strip()
    return pairs


def write_credentials(path: Path, pairs: dict[str, str]) -> None:
    """Write the credentials file, readable by its owner only."""
    lines = ["# Syndarix demo credentials, written by `manage.py seed_demo`. Keep out of version control."]
    lines += [f"{name}={password}" for name, password in pairs.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
