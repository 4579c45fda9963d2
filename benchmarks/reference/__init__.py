"""The plain-DRF reference the fleet benchmark compares the agent API with (served by its own settings and URLconf)."""
