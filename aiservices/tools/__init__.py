"""AI tools. Each module of this package may define tools (``@registry.register`` classes); all of
them are imported here, so adding a tool is adding one class in one module."""

from __future__ import annotations

import importlib
import pkgutil

from .base import NAMESPACE, Tool, ToolResult
from .registry import registry

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["NAMESPACE", "Tool", "ToolResult", "registry"]
