"""The playground build kit: an agent-template overlay, and the rule that applies it.

The overlay is a partial ``parameters.agent`` document that helps someone author an agent in the
playground. It is shown there and merged into a throwaway copy of the draft for a
kit-on run; it is never committed and the agents app never reads it.

``build_overlay()`` assembles it by iterating the catalogs:

- ``tools``: every build-kit platform op of ``platform_ops.platform_ops()`` as
  ``{"type": "platform", "op", "permission"}`` (the op's default permission), then an embed of
  every embeddable client tool of the static catalog;
- ``skills``: an embed of every embeddable skill of the static catalog;
- each embed carries the entry's display ``name`` beside ``@ag.embed`` (what the playground shows;
  resolution replaces the whole object, so it never reaches the agent);
- ``sandbox.permissions``: ``KIT_SANDBOX_PERMISSIONS`` (write files, execute code).

``apply_overlay(template, overlay)`` is pure (it never changes its inputs):

- object keys ``OBJECT_KEYS`` deep-merge, the overlay winning at each leaf; arrays inside objects
  are leaves (replaced, not merged); a user value that is not an object counts as ``{}``;
- list keys ``LIST_KEYS`` merge by identity: an overlay entry whose identity matches a user
  entry replaces it in place, anything else is appended, an entry without identity always is
  (between two embeds only the ``@ag.embed`` bodies count as overrides: keys beside them are
  display-only);
- other overlay keys are ignored.

Identities: a tool is ``platform:<op>`` when ``type`` is ``platform``, else ``workflow:<slug>``
when it is an embed, else ``name:<name>``; a skill is ``workflow:<slug>`` (embeds only: inline
skills are always appended); an MCP server is ``name:<name>``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .catalog import KIND_AGENT_CONFIG, KIND_SKILL, KIND_TOOL, STATIC_CATALOG, StaticEntry
from .embed import EMBED_KEY, REFERENCES_KEY, embed_slug, is_embed
from .platform_ops import platform_ops

OBJECT_KEYS = ("sandbox", "runner", "harness", "llm", "instructions")
LIST_KEYS = ("tools", "skills", "mcps")

#: Sandbox permissions the kit grants while authoring (permission name -> allow | ask | deny).
KIT_SANDBOX_PERMISSIONS = {"write_files": "allow", "execute_code": "allow"}

#: The hint shown beside each user value the kit overrides.
OVERRIDE_HINT = "Overridden in the playground by the build kit; turn the kit off to run as published"


def _embed(entry: StaticEntry) -> dict[str, Any]:
    """An embed of a catalog entry, with the entry's display ``name`` beside it (dropped on resolution)."""
    return {"name": entry.name, EMBED_KEY: {REFERENCES_KEY: {"workflow": {"slug": entry.slug}}}}


def build_overlay() -> dict[str, Any]:
    """Assemble the build-kit overlay from the ops catalog and the static catalog.

    Returns ``{"tools": [...], "skills": [...], "sandbox": {"permissions": {...}}}`` (a new object
    on every call).
    """
    tools: list[dict[str, Any]] = [
        {"type": "platform", "op": op.name, "permission": op.default_permission}
        for op in platform_ops().values()
        if op.in_build_kit
    ]
    tools += [_embed(e) for e in STATIC_CATALOG.values() if e.kind == KIND_TOOL and e.embeddable]
    skills = [_embed(e) for e in STATIC_CATALOG.values() if e.kind == KIND_SKILL and e.embeddable]
    return {"tools": tools, "skills": skills, "sandbox": {"permissions": dict(KIT_SANDBOX_PERMISSIONS)}}


#: The overlay as a static catalog entry (``__sx__build_kit``): fetchable, never embeddable. Declared here, beside
#: what it is built from, and added to the catalog by ``BuildKitConfig.ready`` (``catalog.register_entry``).
BUILD_KIT_ENTRY = StaticEntry(
    slug="__sx__build_kit",
    kind=KIND_AGENT_CONFIG,
    name="Playground build kit",
    description="The playground build-kit overlay; fetchable, never embeddable.",
    embeddable=False,
    versions={1: build_overlay},
)


def tool_identity(entry: Any) -> str | None:
    """``platform:<op>`` | ``workflow:<embed slug>`` | ``name:<name>`` | ``None``."""
    if not isinstance(entry, dict):
        return None
    if entry.get("type") == "platform" and isinstance(entry.get("op"), str):
        return f"platform:{entry['op']}"
    slug = embed_slug(entry)
    if slug:
        return f"workflow:{slug}"
    if isinstance(entry.get("name"), str) and entry["name"]:
        return f"name:{entry['name']}"
    return None


def skill_identity(entry: Any) -> str | None:
    """``workflow:<embed slug>``, or ``None`` for inline skills."""
    slug = embed_slug(entry)
    return f"workflow:{slug}" if slug else None


def mcp_identity(entry: Any) -> str | None:
    """``name:<name>``, or ``None``."""
    if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"]:
        return f"name:{entry['name']}"
    return None


IDENTITIES = {"tools": tool_identity, "skills": skill_identity, "mcps": mcp_identity}


@dataclass(frozen=True)
class Override:
    """A place where the kit changed a value the user had set.

    ``kit_value`` is ``None`` when the kit's entry dropped the user's value.
    """

    path: str
    user_value: Any
    kit_value: Any

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "user_value": self.user_value, "kit_value": self.kit_value}


def _leaf_changes(user: Any, kit: Any, path: str, out: list[Override]) -> None:
    """Record every user-set leaf under ``path`` that ``kit`` changes or drops."""
    if isinstance(user, dict) and isinstance(kit, dict):
        for key, value in user.items():
            sub = f"{path}.{key}"
            if key in kit:
                _leaf_changes(value, kit[key], sub, out)
            else:
                out.append(Override(sub, copy.deepcopy(value), None))
    elif user != kit:
        out.append(Override(path, copy.deepcopy(user), copy.deepcopy(kit)))


def _deep_merge(base: dict[str, Any], over: dict[str, Any], path: str, out: list[Override]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in over.items():
        sub = f"{path}.{key}"
        if isinstance(value, dict):
            current = base.get(key)
            if key in base and not isinstance(current, dict):
                out.append(Override(sub, copy.deepcopy(current), copy.deepcopy(value)))
            merged[key] = _deep_merge(current if isinstance(current, dict) else {}, value, sub, out)
        else:
            if key in base and base[key] != value:
                out.append(Override(sub, copy.deepcopy(base[key]), copy.deepcopy(value)))
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_list(key: str, base: list[Any], over: list[Any], out: list[Override]) -> list[Any]:
    identity = IDENTITIES[key]
    merged = copy.deepcopy(base)
    positions: dict[str, int] = {}
    for index, entry in enumerate(base):
        ident = identity(entry)
        if ident is not None:
            positions.setdefault(ident, index)
    user_positions = set(positions.values())
    for entry in over:
        ident = identity(entry)
        if ident is not None and ident in positions:
            index = positions[ident]
            if index in user_positions:
                if is_embed(base[index]) and is_embed(entry):
                    # keys beside an embed (a display name) are dropped on resolution: compare what runs
                    _leaf_changes(base[index][EMBED_KEY], entry[EMBED_KEY], f"{key}.{index}.{EMBED_KEY}", out)
                else:
                    _leaf_changes(base[index], entry, f"{key}.{index}", out)
                user_positions.discard(index)
            merged[index] = copy.deepcopy(entry)
        else:
            merged.append(copy.deepcopy(entry))
            if ident is not None:
                positions[ident] = len(merged) - 1
    return merged


def apply_overlay(template: dict[str, Any], overlay: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Merge ``overlay`` into a copy of ``template``; neither input is changed.

    Returns ``(effective, overrides)``: the merged template, and one
    ``{"path", "user_value", "kit_value"}`` per value the user had set that the kit changed
    (dotted paths into ``effective``, e.g. ``sandbox.permissions.write_files``, ``tools.2.permission``).
    """
    effective = copy.deepcopy(template) if isinstance(template, dict) else {}
    overrides: list[Override] = []
    for key, value in (overlay or {}).items():
        if key in OBJECT_KEYS:
            base = effective.get(key)
            if isinstance(value, dict):
                if key in effective and not isinstance(base, dict):
                    overrides.append(Override(key, copy.deepcopy(base), copy.deepcopy(value)))
                effective[key] = _deep_merge(base if isinstance(base, dict) else {}, value, key, overrides)
            else:
                if key in effective and base != value:
                    overrides.append(Override(key, copy.deepcopy(base), copy.deepcopy(value)))
                effective[key] = copy.deepcopy(value)
        elif key in LIST_KEYS and isinstance(value, list):
            base = effective.get(key)
            if key in effective and not isinstance(base, list):
                overrides.append(Override(key, copy.deepcopy(base), copy.deepcopy(value)))
            effective[key] = _merge_list(key, base if isinstance(base, list) else [], value, overrides)
    return effective, [o.as_dict() for o in overrides]
