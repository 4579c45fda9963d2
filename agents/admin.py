from . import context_admin  # noqa: F401
