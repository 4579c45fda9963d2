"""The registry of Python agent classes.

An agent class subclasses ``BaseAgent``, describes itself with class attributes (``slug``,
``name``, ``description``, ``capabilities``, ``config_schema``) and implements any of the
lifecycle hooks ``initialize``, ``activate``, ``deactivate`` and ``shutdown`` (plain methods or
``async def``). Modules hand their classes to the registry through a module-level
``register_agents(registry)`` function; the modules named in the ``AGENT_REGISTRY_MODULES``
setting are loaded, after the built-ins of ``agents.registry.builtin``, when the app starts
(``AgentsConfig.ready`` → ``load_agent_modules``). A module that cannot be loaded stops every
process at start-up (runserver, gunicorn, management commands) with ``AgentModulesUnusable``, an
``ImproperlyConfigured`` naming each module; the system check ``agents.E001``-``E003``
(``agents/checks.py``) reports the same failures for the setting as it is when checks run.

An ``AgentType`` names its class in ``handler`` (the class slug); ``agents.registry.hooks`` runs the class's
hooks after each committed lifecycle change of an instance of that type.
"""

from __future__ import annotations

import copy
import importlib
import logging
import re
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

if TYPE_CHECKING:
    from ..models import AgentInstance, AgentTransition

logger = logging.getLogger(__name__)

#: The module that ships the built-in agent classes; it is always loaded first.
BUILTIN_MODULE = "agents.registry.builtin"

#: The lifecycle hooks an agent class may implement, in lifecycle order.
HOOKS = ("initialize", "activate", "deactivate", "shutdown")

#: A class slug is an ``AgentType.handler`` value: lowercase letters, digits, ``-`` and ``_``.
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


class AgentRegistryError(ImproperlyConfigured):
    """An agent class or an agent module is unusable (a configuration error, not a user error)."""


class InvalidAgentClass(AgentRegistryError):
    """A class handed to ``register`` does not describe itself correctly."""


class DuplicateAgentSlug(AgentRegistryError):
    """Two different classes claim the same slug."""


class UnknownAgentClass(AgentRegistryError, LookupError):
    """No class is registered under the requested slug."""


class AgentModuleError(AgentRegistryError):
    """A module named in ``AGENT_REGISTRY_MODULES`` cannot be used.

    Attributes:
        module: the dotted path as configured.
        reason: ``"import"`` (importing it failed), ``"no_register_agents"`` (it has no callable
            ``register_agents``) or ``"register_agents"`` (calling it raised).
    """

    def __init__(self, module: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.module = module
        self.reason = reason
        self.message = message


class BaseAgent:
    """Base class of every agent class; abstract: subclasses set at least ``slug`` and ``name``.

    Class attributes (the definition ``sync_agent_types`` copies onto the ``AgentType`` row):
        slug: the key an ``AgentType.handler`` names (``SLUG_RE``, at most 100 characters).
        name: a human name.
        description: what the agent does.
        capabilities: capability names (list of strings).
        config_schema: a JSON Schema (draft 2020-12) for instances' ``config``.

    An object is constructed for one ``AgentInstance`` (and the ``AgentTransition`` being handled)
    each time a hook runs. A hook reads
    ``self.agent`` / ``self.config`` / ``self.resolved_config`` and does its work on ``self.memory``
    (the instance's ``short_term_memory``); the hook runner saves the memory after a hook returns
    within its time budget (``agents.registry.hooks``). Hooks may be plain methods or ``async def``; they run
    outside any transaction, and a hook that raises or overruns is recorded on the instance
    (``last_error`` and a ledger note) without undoing the lifecycle change.
    """

    slug: ClassVar[str] = ""
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    capabilities: ClassVar[list[str]] = []
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def __init__(self, agent: AgentInstance, *, transition: AgentTransition | None = None) -> None:
        if type(self) is BaseAgent:
            raise TypeError("BaseAgent is abstract; subclass it and set slug and name.")
        self.agent = agent
        #: The ledger row of the lifecycle change being handled (``None`` for ``initialize``).
        self.transition = transition

    # --- What a hook works with. ---

    @property
    def config(self) -> dict[str, Any]:
        """The instance's ``config`` as stored (validated against ``config_schema`` at spawn)."""
        return self.agent.config or {}

    @property
    def resolved_config(self) -> dict[str, Any]:
        """``config`` over the ``default`` of each top-level property of ``config_schema``."""
        properties = self.config_schema.get("properties", {})
        defaults = {key: copy.deepcopy(spec["default"]) for key, spec in properties.items() if "default" in spec}
        return {**defaults, **self.config}

    @property
    def memory(self) -> dict[str, Any]:
        """The instance's ``short_term_memory`` (a dict the hooks change in place)."""
        if not isinstance(self.agent.short_term_memory, dict):
            self.agent.short_term_memory = {}
        return self.agent.short_term_memory

    @staticmethod
    def now() -> datetime:
        """The current time (UTC, aware)."""
        return timezone.now()

    # --- Lifecycle hooks (override any of them; sync or ``async def``). ---

    def initialize(self) -> None:
        """After the spawn committed (the agent is IDLE). The default does nothing."""

    def activate(self) -> None:
        """After any change to WORKING. The default does nothing."""

    def deactivate(self) -> None:
        """After WORKING/WAITING → PAUSED or IDLE. The default does nothing."""

    def shutdown(self) -> None:
        """After any change to TERMINATED. The default does nothing."""

    # --- Describing the class. ---

    @classmethod
    def definition(cls) -> dict[str, Any]:
        """The class definition: ``{"slug", "name", "description", "capabilities", "config_schema"}``."""
        return {
            "slug": cls.slug,
            "name": cls.name,
            "description": cls.description,
            "capabilities": list(cls.capabilities),
            "config_schema": copy.deepcopy(cls.config_schema),
        }

    def to_dict(self) -> dict[str, Any]:
        """The definition plus this instance: ``agent_id`` (str), ``status``, ``config``, ``memory``."""
        return {
            **self.definition(),
            "agent_id": str(self.agent.pk),
            "status": str(self.agent.status),
            "config": copy.deepcopy(self.config),
            "memory": copy.deepcopy(self.memory),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.slug!r} for agent {self.agent.pk}>"


def validate_agent_class(cls: Any) -> None:
    """Check that ``cls`` is a usable agent class.

    Raises:
        InvalidAgentClass: naming the class and every problem found.
    """
    if not isinstance(cls, type) or not issubclass(cls, BaseAgent) or cls is BaseAgent:
        raise InvalidAgentClass(f"{cls!r} is not a subclass of agents.registry.BaseAgent.")
    label = f"{cls.__module__}.{cls.__qualname__}"
    problems = []
    if not isinstance(cls.slug, str) or not SLUG_RE.match(cls.slug):
        problems.append(f"slug {cls.slug!r} must match {SLUG_RE.pattern}")
    if not isinstance(cls.name, str) or not cls.name.strip() or len(cls.name) > 200:
        problems.append("name must be a non-empty string of at most 200 characters")
    if not isinstance(cls.description, str):
        problems.append("description must be a string")
    if not isinstance(cls.capabilities, list | tuple) or not all(isinstance(c, str) for c in cls.capabilities):
        problems.append("capabilities must be a list of strings")
    if not isinstance(cls.config_schema, dict):
        problems.append("config_schema must be a dict (a JSON Schema)")
    else:
        try:
            Draft202012Validator.check_schema(cls.config_schema)
        except SchemaError as exc:
            problems.append(f"config_schema is not a valid JSON Schema: {exc.message}")
    for hook in HOOKS:
        if not callable(getattr(cls, hook, None)):
            problems.append(f"{hook} must be a method")
    if problems:
        raise InvalidAgentClass(f"Agent class {label}: " + "; ".join(problems) + ".")


class AgentRegistry:
    """Registered agent classes by slug. Thread-safe; one default instance, ``registry``.

    ``populate()`` loads the built-ins and the modules of ``AGENT_REGISTRY_MODULES``; module
    problems are kept in ``errors`` (and logged) rather than raised, so the system check can report
    all of them with their module names.
    """

    def __init__(self) -> None:
        self._classes: dict[str, type[BaseAgent]] = {}
        self._lock = threading.RLock()
        self.errors: list[AgentModuleError] = []

    def register(self, cls: type[BaseAgent]) -> type[BaseAgent]:
        """Register ``cls`` under ``cls.slug`` and return it (so it also works as a decorator).

        Registering the same class again is a no-op.

        Raises:
            InvalidAgentClass: ``cls`` is not a valid agent class (``validate_agent_class``).
            DuplicateAgentSlug: another class already holds the slug.
        """
        validate_agent_class(cls)
        with self._lock:
            existing = self._classes.get(cls.slug)
            if existing is not None and existing is not cls:
                raise DuplicateAgentSlug(
                    f"Agent slug '{cls.slug}' is already registered by "
                    f"{existing.__module__}.{existing.__qualname__}; "
                    f"{cls.__module__}.{cls.__qualname__} cannot register it too."
                )
            self._classes[cls.slug] = cls
        return cls

    def unregister(self, slug: str) -> type[BaseAgent]:
        """Remove and return the class registered under ``slug``.

        Raises:
            UnknownAgentClass: nothing is registered under ``slug``.
        """
        with self._lock:
            try:
                return self._classes.pop(slug)
            except KeyError:
                raise UnknownAgentClass(f"No agent class is registered as '{slug}'.") from None

    def get(self, slug: str) -> type[BaseAgent]:
        """The class registered under ``slug``.

        Raises:
            UnknownAgentClass: nothing is registered under ``slug``.
        """
        try:
            return self._classes[slug]
        except KeyError:
            raise UnknownAgentClass(f"No agent class is registered as '{slug}'.") from None

    def __contains__(self, slug: object) -> bool:
        return slug in self._classes

    def __len__(self) -> int:
        return len(self._classes)

    def slugs(self) -> list[str]:
        """Registered slugs, sorted."""
        return sorted(self._classes)

    def classes(self) -> list[type[BaseAgent]]:
        """Registered classes, sorted by slug."""
        with self._lock:
            return [self._classes[slug] for slug in sorted(self._classes)]

    def definitions(self) -> list[dict[str, Any]]:
        """``BaseAgent.definition()`` of every registered class, sorted by slug."""
        return [cls.definition() for cls in self.classes()]

    def clear(self) -> None:
        """Forget every class and every recorded module error."""
        with self._lock:
            self._classes.clear()
            self.errors = []

    # --- Loading modules. ---

    def load_module(self, dotted_path: str) -> None:
        """Import ``dotted_path`` and call its ``register_agents(self)``.

        Raises:
            AgentModuleError: naming the module, when the import fails, when it has no callable
                ``register_agents``, or when calling it raises (an invalid class, a duplicate slug).
        """
        try:
            module = importlib.import_module(dotted_path)
        except Exception as exc:  # noqa: BLE001 - any import-time failure is reported with the module name
            raise AgentModuleError(
                dotted_path, "import", f"Agent module '{dotted_path}' cannot be imported: {type(exc).__name__}: {exc}"
            ) from exc
        hook = getattr(module, "register_agents", None)
        if not callable(hook):
            raise AgentModuleError(
                dotted_path,
                "no_register_agents",
                f"Agent module '{dotted_path}' has no register_agents(registry) function.",
            )
        try:
            hook(self)
        except Exception as exc:  # noqa: BLE001 - the module's own error, reported with its name
            raise AgentModuleError(
                dotted_path,
                "register_agents",
                f"Agent module '{dotted_path}': register_agents() failed: {type(exc).__name__}: {exc}",
            ) from exc

    def populate(
        self, modules: Iterable[str] | None = None, *, builtins: bool = True, log: bool = True
    ) -> list[AgentModuleError]:
        """Load the built-ins (when ``builtins``) and ``modules`` (default: ``AGENT_REGISTRY_MODULES``).

        Each module is loaded independently: one that fails is recorded in ``errors`` (and logged
        when ``log``), and the others still load. Returns the errors of this call.
        """
        names = list(settings.AGENT_REGISTRY_MODULES if modules is None else modules)
        if builtins and BUILTIN_MODULE not in names:
            names.insert(0, BUILTIN_MODULE)
        failures: list[AgentModuleError] = []
        for name in (n.strip() for n in names):
            if not name:
                continue
            try:
                self.load_module(name)
            except AgentModuleError as exc:
                if log:
                    logger.error("%s", exc.message)
                failures.append(exc)
        with self._lock:
            self.errors.extend(failures)
        return failures

    def reload(self, modules: Iterable[str] | None = None) -> list[AgentModuleError]:
        """Forget everything, then ``populate(modules)``."""
        self.clear()
        return self.populate(modules)


#: What to do about each ``AgentModuleError.reason`` (the system check and the start-up error show it).
MODULE_ERROR_HINTS = {
    "import": "Fix the module or remove it from AGENT_REGISTRY_MODULES (comma-separated dotted paths).",
    "no_register_agents": "Define register_agents(registry) in the module and call registry.register(cls) there.",
    "register_agents": "Each class needs a unique slug, a name, a list of capabilities and a valid JSON Schema.",
}


class AgentModulesUnusable(AgentRegistryError):
    """Start-up refused: modules named in ``AGENT_REGISTRY_MODULES`` cannot be used.

    Attributes:
        failures: the ``AgentModuleError`` of each module, in setting order.
    """

    def __init__(self, failures: list[AgentModuleError]) -> None:
        self.failures = failures
        lines = [f"{len(failures)} module(s) in AGENT_REGISTRY_MODULES cannot be used:"]
        for failure in failures:
            lines.append(f"  {failure.module}: {failure.message}")
            lines.append(f"    hint: {MODULE_ERROR_HINTS[failure.reason]}")
        super().__init__("\n".join(lines))


def load_agent_modules(agent_registry: AgentRegistry, modules: Iterable[str] | None = None) -> None:
    """Load the built-ins and ``modules`` (default: ``AGENT_REGISTRY_MODULES``) into ``agent_registry``.

    Called by ``AgentsConfig.ready()``, so a bad module stops any process at start-up instead of
    letting it serve without the module's classes.

    Raises:
        AgentModulesUnusable: an ``ImproperlyConfigured`` naming every module that failed to load
            (all modules are tried first), with a hint for each.
    """
    failures = agent_registry.populate(modules)
    if failures:
        raise AgentModulesUnusable(failures)


#: The registry the application uses, populated in ``AgentsConfig.ready()``.
registry = AgentRegistry()
