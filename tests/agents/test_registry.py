"""The registry of agent classes: registering, loading modules, the system check, the built-ins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from agents.models import AgentInstance
from agents.registry import (
    AgentModuleError,
    AgentModulesUnusable,
    AgentRegistry,
    BaseAgent,
    DuplicateAgentSlug,
    InvalidAgentClass,
    UnknownAgentClass,
    builtin,
    load_agent_modules,
    registry,
)
from agents.signals import agent_spawned, agent_transitioned
from tests.factories import AgentTypeFactory

MODULES = "tests.agents.agent_modules"


class Alpha(BaseAgent):
    slug = "alpha"
    name = "Alpha"
    description = "First."
    capabilities = ["a", "b"]
    config_schema = {"type": "object", "properties": {"depth": {"type": "integer", "default": 3}}}


class AlphaImpostor(BaseAgent):
    slug = "alpha"
    name = "Alpha impostor"


class Beta(BaseAgent):
    slug = "beta"
    name = "Beta"


def test_register_get_definitions_unregister():
    reg = AgentRegistry()
    assert reg.register(Beta) is Beta
    reg.register(Alpha)
    assert reg.get("alpha") is Alpha
    assert "alpha" in reg and len(reg) == 2
    assert reg.slugs() == ["alpha", "beta"]
    assert reg.definitions() == [
        {
            "slug": "alpha",
            "name": "Alpha",
            "description": "First.",
            "capabilities": ["a", "b"],
            "config_schema": {"type": "object", "properties": {"depth": {"type": "integer", "default": 3}}},
        },
        {"slug": "beta", "name": "Beta", "description": "", "capabilities": [], "config_schema": {"type": "object"}},
    ]
    assert reg.unregister("alpha") is Alpha
    assert "alpha" not in reg
    with pytest.raises(UnknownAgentClass, match="'alpha'"):
        reg.get("alpha")
    with pytest.raises(UnknownAgentClass):
        reg.unregister("alpha")


def test_register_works_as_a_decorator():
    reg = AgentRegistry()

    @reg.register
    class Gamma(BaseAgent):
        slug = "gamma"
        name = "Gamma"

    assert reg.get("gamma") is Gamma


def test_duplicate_slug_is_a_clear_error_and_keeps_the_first_class():
    reg = AgentRegistry()
    reg.register(Alpha)
    with pytest.raises(DuplicateAgentSlug) as info:
        reg.register(AlphaImpostor)
    message = str(info.value)
    assert "'alpha' is already registered" in message
    assert f"{__name__}.Alpha;" in message and f"{__name__}.AlphaImpostor" in message
    assert reg.get("alpha") is Alpha


def test_registering_the_same_class_twice_is_a_noop():
    reg = AgentRegistry()
    reg.register(Alpha)
    reg.register(Alpha)
    assert reg.slugs() == ["alpha"]


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        ({"slug": ""}, "slug ''"),
        ({"slug": "Has Spaces"}, "slug 'Has Spaces'"),
        ({"name": ""}, "name must be"),
        ({"capabilities": "code"}, "capabilities must be a list of strings"),
        ({"capabilities": ["code", 3]}, "capabilities must be a list of strings"),
        ({"config_schema": []}, "config_schema must be a dict"),
        ({"config_schema": {"type": "banana"}}, "config_schema is not a valid JSON Schema"),
        ({"activate": "not callable"}, "activate must be a method"),
    ],
)
def test_invalid_classes_are_refused_with_the_problem(attributes, problem):
    cls = type("Broken", (BaseAgent,), {"slug": "broken", "name": "Broken", **attributes})
    with pytest.raises(InvalidAgentClass, match="Broken") as info:
        AgentRegistry().register(cls)
    assert problem in str(info.value)


@pytest.mark.parametrize("candidate", [BaseAgent, object, "reviewer"])
def test_only_base_agent_subclasses_register(candidate):
    with pytest.raises(InvalidAgentClass, match="not a subclass"):
        AgentRegistry().register(candidate)


def test_base_agent_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        BaseAgent(AgentInstance())


def test_instance_helpers_resolve_defaults_and_serialize():
    agent = AgentInstance(name="a", config={"extra": True}, short_term_memory={"k": 1})
    alpha = Alpha(agent)
    assert alpha.resolved_config == {"depth": 3, "extra": True}
    assert Alpha(AgentInstance(name="b", config={"depth": 9})).resolved_config == {"depth": 9}
    alpha.memory["seen"] = True
    assert agent.short_term_memory == {"k": 1, "seen": True}
    data = alpha.to_dict()
    assert data["slug"] == "alpha" and data["agent_id"] == str(agent.pk)
    assert (data["status"], data["config"], data["memory"]) == ("idle", {"extra": True}, {"k": 1, "seen": True})


# --- Loading modules. ---


def test_load_module_calls_register_agents():
    reg = AgentRegistry()
    reg.load_module(f"{MODULES}.echo")
    assert reg.slugs() == ["echo"]


@pytest.mark.parametrize(
    ("module", "reason", "text"),
    [
        ("broken_import", "import", "cannot be imported: ImportError"),
        ("does_not_exist", "import", "cannot be imported: ModuleNotFoundError"),
        ("no_register", "no_register_agents", "has no register_agents(registry) function"),
        ("duplicate", "register_agents", "register_agents() failed: DuplicateAgentSlug"),
    ],
)
def test_a_bad_module_is_reported_with_its_name(module, reason, text):
    dotted = f"{MODULES}.{module}"
    reg = AgentRegistry()
    reg.populate([])
    with pytest.raises(AgentModuleError) as info:
        reg.load_module(dotted)
    assert info.value.module == dotted
    assert info.value.reason == reason
    assert f"'{dotted}'" in info.value.message and text in info.value.message


def test_populate_loads_builtins_then_modules_and_keeps_going_past_failures():
    reg = AgentRegistry()
    failures = reg.populate([f"{MODULES}.broken_import", f"{MODULES}.echo", " ", f"{MODULES}.no_register"])
    assert reg.slugs() == ["builder", "echo", "reviewer", "tester"]
    assert [f.module for f in failures] == [f"{MODULES}.broken_import", f"{MODULES}.no_register"]
    assert reg.errors == failures


def test_populate_reads_the_setting():
    with override_settings(AGENT_REGISTRY_MODULES=[f"{MODULES}.echo"]):
        reg = AgentRegistry()
        assert reg.populate() == []
    assert "echo" in reg and "reviewer" in reg


def test_reload_forgets_unregistered_modules():
    reg = AgentRegistry()
    reg.populate([f"{MODULES}.echo", f"{MODULES}.no_register"])
    assert reg.reload([]) == []
    assert reg.slugs() == ["builder", "reviewer", "tester"] and reg.errors == []


def test_the_application_registry_holds_the_builtins_and_hooks_are_connected():
    assert {"reviewer", "builder", "tester"} <= set(registry.slugs())
    assert registry.errors == []
    assert agent_spawned.has_listeners(AgentInstance)
    assert agent_transitioned.has_listeners(AgentInstance)


# --- The system check. ---


def test_check_passes_with_good_modules():
    with override_settings(AGENT_REGISTRY_MODULES=[f"{MODULES}.echo"]):
        assert run_checks(tags=["agents"]) == []
        call_command("check", verbosity=0)


def test_check_fails_start_up_naming_each_bad_module():
    bad = [f"{MODULES}.broken_import", f"{MODULES}.no_register", f"{MODULES}.duplicate", "missing.agents"]
    with override_settings(AGENT_REGISTRY_MODULES=[f"{MODULES}.echo", *bad]):
        errors = run_checks(tags=["agents"])
        assert [(e.id, e.obj) for e in errors] == [
            ("agents.E001", bad[0]),
            ("agents.E002", bad[1]),
            ("agents.E003", bad[2]),
            ("agents.E001", bad[3]),
        ]
        assert all(e.obj in e.msg for e in errors)
        with pytest.raises(SystemCheckError) as info:
            call_command("check", verbosity=0)
    for module in bad:
        assert module in str(info.value)


# --- Start-up: any process refuses to start with a bad module. ---

BAD_MODULES = [f"{MODULES}.broken_import", f"{MODULES}.no_register", f"{MODULES}.duplicate", "missing.agents"]


def test_loading_names_every_bad_module_with_a_hint():
    reg = AgentRegistry()
    with pytest.raises(AgentModulesUnusable) as info:
        load_agent_modules(reg, [f"{MODULES}.echo", *BAD_MODULES])
    assert isinstance(info.value, ImproperlyConfigured)
    assert [f.module for f in info.value.failures] == BAD_MODULES
    message = str(info.value)
    assert message.startswith("4 module(s) in AGENT_REGISTRY_MODULES cannot be used:")
    for module in BAD_MODULES:
        assert f"\n  {module}: Agent module '{module}'" in message
    assert "hint: Fix the module or remove it from AGENT_REGISTRY_MODULES" in message
    assert "echo" in reg  # the good module still loaded; the process stops anyway


def test_loading_good_modules_raises_nothing():
    reg = AgentRegistry()
    load_agent_modules(reg, [f"{MODULES}.echo"])
    assert {"echo", "reviewer", "builder", "tester"} <= set(reg.slugs())


def test_the_app_refuses_to_become_ready_with_a_bad_module(monkeypatch):
    scratch = AgentRegistry()
    monkeypatch.setattr("agents.registry.registry", scratch)
    bad = override_settings(AGENT_REGISTRY_MODULES=[f"{MODULES}.broken_import"])
    with bad, pytest.raises(ImproperlyConfigured, match=f"{MODULES}.broken_import"):
        apps.get_app_config("agents").ready()
    assert registry.errors == []  # the application's own registry is untouched


def _start(modules: str) -> subprocess.CompletedProcess:
    """Import the WSGI application (what gunicorn does at start-up) in a fresh process."""
    root = Path(__file__).resolve().parents[2]
    environment = {**os.environ, "AGENT_REGISTRY_MODULES": modules, "DJANGO_SETTINGS_MODULE": "syndarix.settings"}
    return subprocess.run(
        [sys.executable, "-c", "import syndarix.wsgi"], cwd=root, env=environment, capture_output=True, text=True,
        timeout=120,
    )


def test_a_wsgi_process_does_not_start_with_a_bad_module():
    started = _start(f"{MODULES}.echo,{MODULES}.broken_import")
    assert started.returncode != 0
    assert "AgentModulesUnusable" in started.stderr
    assert f"{MODULES}.broken_import: Agent module '{MODULES}.broken_import' cannot be imported" in started.stderr
    assert _start(f"{MODULES}.echo").returncode == 0


# --- The built-ins. ---


def test_builtins_are_the_three_demo_agents():
    assert [cls.slug for cls in builtin.BUILTIN_AGENTS] == ["reviewer", "builder", "tester"]
    for cls in builtin.BUILTIN_AGENTS:
        assert registry.get(cls.slug) is cls
        assert cls.capabilities and cls.description
        assert cls.config_schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("cls", "good", "bad", "bad_field"),
    [
        (builtin.ReviewerAgent, {"strictness": "strict", "focus": ["security"]}, {"focus": ["vibes"]},
         "config.focus.0"),
        (builtin.BuilderAgent, {"language": "go", "max_iterations": 3}, {"max_iterations": 0}, "config.max_iterations"),
        (builtin.TesterAgent, {"framework": "jest", "coverage_threshold": 90}, {"coverage_threshold": 101},
         "config.coverage_threshold"),
    ],
)
def test_builtin_config_schemas_validate_instance_config(db, cls, good, bad, bad_field):
    agent_type = AgentTypeFactory(slug=cls.slug, handler=cls.slug, config_schema=cls.config_schema)
    agent_type.full_clean()
    agent_type.validate_config({})
    agent_type.validate_config(good)
    with pytest.raises(ValidationError) as info:
        agent_type.validate_config(bad)
    assert bad_field in info.value.message_dict
    with pytest.raises(ValidationError) as info:
        agent_type.validate_config({"unknown": 1})
    assert "config" in info.value.message_dict
