"""Agent modules for the registry tests (named in AGENT_REGISTRY_MODULES by the tests)."""
