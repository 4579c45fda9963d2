"""The registry of Python agent classes, their lifecycle hooks, and their API and admin.

``agents.registry`` is the public import path for agent modules (``from agents.registry import BaseAgent``,
see docs/concepts/agent-classes.md): it names the public parts of ``base``. The package holds ``base`` (``BaseAgent``,
``AgentRegistry``, the application's ``registry``, module loading), ``hooks`` (running the classes' lifecycle
hooks on workers), ``builtin`` (the built-in classes), ``selectors`` (the classes with their synced agent types)
and the API (``views``, ``serializers``) and admin (``admin``) pieces.
"""

from .base import (
    HOOKS,
    MODULE_ERROR_HINTS,
    AgentModuleError,
    AgentModulesUnusable,
    AgentRegistry,
    AgentRegistryError,
    BaseAgent,
    DuplicateAgentSlug,
    InvalidAgentClass,
    UnknownAgentClass,
    load_agent_modules,
    registry,
    validate_agent_class,
)

__all__ = [
    "HOOKS",
    "MODULE_ERROR_HINTS",
    "AgentModuleError",
    "AgentModulesUnusable",
    "AgentRegistry",
    "AgentRegistryError",
    "BaseAgent",
    "DuplicateAgentSlug",
    "InvalidAgentClass",
    "UnknownAgentClass",
    "load_agent_modules",
    "registry",
    "validate_agent_class",
]
