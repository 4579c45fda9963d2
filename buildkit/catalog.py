"""The static catalog: the platform's own workflows under reserved ``__sx__`` slugs.

Each entry is declared once, with pinned versions. A reference to a reserved slug is answered
from this catalog only, never from the database, and a miss stays a miss. Agent types cannot take a
reserved slug (``agents.models.validate_not_reserved_slug``).

| slug | kind | embeddable | document |
|---|---|---|---|
| ``__sx__getting_started`` | skill | yes | an inline skill: how to author a Syndarix agent (markdown) |
| ``__sx__request_connection`` | tool | yes | the client tool ``request_connection`` of the tool registry |
| ``__sx__request_input`` | tool | yes | the client tool ``request_input`` of the tool registry |
| ``__sx__build_kit`` | agent_config | no | the playground build-kit overlay (a partial template) |

The build kit's entry is declared in ``overlay.py``, beside the overlay it is built from this catalog, and added
with ``register_entry`` when the app is ready: the catalog never imports the overlay, so the modules depend one
way (``embed`` → ``catalog``; ``overlay`` → ``catalog``, ``embed``).

A version is an integer; ``"v1"``, ``"1"`` and ``1`` name the same version (``normalize_version``).
Documents are built fresh (deep copies) on every lookup, so callers may change what they get.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from agents.models import RESERVED_SLUG_PREFIX
from agents.runtime.tools.client import REQUEST_CONNECTION, REQUEST_INPUT
from agents.runtime.tools.registry import tool_registry
from syndarix.exceptions import InvalidInput

KIND_SKILL = "skill"
KIND_TOOL = "tool"
KIND_AGENT_CONFIG = "agent_config"
KINDS = (KIND_SKILL, KIND_TOOL, KIND_AGENT_CONFIG)

_VERSION_RE = re.compile(r"^[vV]?([1-9][0-9]*)$")


class InvalidVersion(InvalidInput):
    """A version that is neither a positive integer nor ``"<n>"`` / ``"v<n>"`` (400)."""

    code = "invalid_version"


def normalize_version(value: Any, *, field: str = "version") -> int:
    """Return the integer a version names: ``1``, ``"1"``, ``"v1"`` and ``"V1"`` all give ``1``.

    Raises:
        InvalidVersion: anything else (booleans, zero, negatives, other strings).
    """
    if isinstance(value, bool):
        raise InvalidVersion(f"'{value}' is not a version.", field=field)
    if isinstance(value, int):
        if value >= 1:
            return value
        raise InvalidVersion("A version is 1 or more.", field=field)
    if isinstance(value, str):
        match = _VERSION_RE.match(value.strip())
        if match:
            return int(match.group(1))
    raise InvalidVersion(f"'{value}' is not a version (use 3, \"3\" or \"v3\").", field=field)


def is_reserved(slug: Any) -> bool:
    """True when ``slug`` is in the reserved ``__sx__`` namespace."""
    return isinstance(slug, str) and slug.startswith(RESERVED_SLUG_PREFIX)


@dataclass(frozen=True)
class StaticEntry:
    """One reserved workflow: its versions and whether templates may embed it.

    ``versions`` maps a version number to a factory of that version's document; ``latest`` is the
    version a reference without a version resolves to.
    """

    slug: str
    kind: str
    name: str
    description: str
    embeddable: bool
    versions: Mapping[int, Callable[[], dict[str, Any]]] = field(repr=False)
    latest: int = 1

    def document(self, version: int | None = None) -> dict[str, Any]:
        """A fresh copy of the document at ``version`` (``None``: latest). Raises ``KeyError`` on a miss."""
        factory = self.versions[self.latest if version is None else version]
        return copy.deepcopy(factory())


GETTING_STARTED_MD = """\
# Authoring a Syndarix agent

An agent type's behaviour lives in its **template**, the `parameters.agent` document. You change it
by committing a new revision; revisions are immutable and numbered 1, 2, ... per agent type.

## The template
- `instructions.agents_md` — the agent's standing instructions, in markdown.
- `llm` — `{"model": "...", "tool_choice": "auto", "max_tokens": 1024, "provider": "...", "connection": "...",
  "extras": {}}`; every key is optional: without `model` the agent follows its config's `model`, else the
  setting `AGENT_LLM_MODEL` (the model the server serves).
- `tools` — what the agent can call. Each entry is typed by `type`:
  - `{"type": "platform", "op": "query_agents"}` — an operation of this platform;
  - `{"type": "client", "name", "description", "input_schema"}` — carried out on the person's side;
  - `{"type": "code", "name", "runtime", "script", "input_schema"}` — a script the sandbox runs;
  - `{"type": "reference", "slug", "version"}` — another agent type, called as a tool.
  Any tool may carry `"permission": "allow" | "ask" | "deny"`; without it, reads are allowed and
  writes ask. Any tool may also carry `"render": {"kind": ...}`, a hint for how the person's side
  shows it (`connect`, `elicitation`).
- `skills` — inline `{"name", "description", "content"}` skills, or embeds.
- `mcps` — MCP servers, each with a unique `name`.
- `sandbox` — `{"kind", "permissions": {"write_files": "allow", ...}}`; `runner`, `harness`.

## Reusing what exists
Replace any object with an embed and it is swapped for what it references when the agent runs:

```json
{"@ag.embed": {"@ag.references": {"workflow": {"slug": "research-agent", "version": 3}},
               "@ag.selector": {"path": "tools.0"}}}
```

Without a version the latest revision is used; `@ag.selector.path` picks a dotted path of the
referenced template. The whole object is replaced, so keys beside `@ag.embed` (a display `"name"`)
are dropped. Reserved `__sx__` slugs name the platform's own skills and tools.

## Working in the playground
The playground runs your draft with the **build kit** switched on: platform tools for authoring
(`find_capabilities`, `query_agents`, `read_context`, `write_context`, `spawn_agent`,
`commit_revision`), the client tools `request_connection` and `request_input`, this skill, and
sandbox permissions to write files and execute code. The kit is removed on commit: a committed
revision holds only your own template. Where the kit overrides one of your values, the playground
says so; turn the kit off to run the agent exactly as it will be published.

## A good loop
1. `find_capabilities` with the use cases you are building for; reuse what fits.
2. Write the instructions and the smallest set of tools; prefer `ask` for writes.
3. Run in the playground, read the result, adjust.
4. `commit_revision` with a message that says what changed and why.
"""


def _getting_started_v1() -> dict[str, Any]:
    return {
        "name": "syndarix-getting-started",
        "description": "How to author a Syndarix agent: the template, embeds, the playground and commits.",
        "content": GETTING_STARTED_MD,
    }


def _client_tool(name: str) -> Callable[[], dict[str, Any]]:
    """A version factory for a client tool of the one tool registry (``agents.runtime.tools.client``), as a template
    entry: the catalog publishes it, it does not declare it again."""

    def document() -> dict[str, Any]:
        return tool_registry.get(name).template_entry()

    return document


_ENTRIES = (
    StaticEntry(
        slug="__sx__getting_started",
        kind=KIND_SKILL,
        name="Getting started",
        description="How to author a Syndarix agent (markdown skill).",
        embeddable=True,
        versions={1: _getting_started_v1},
    ),
    StaticEntry(
        slug="__sx__request_connection",
        kind=KIND_TOOL,
        name="Request connection",
        description="Client tool: ask the person to connect an integration.",
        embeddable=True,
        versions={1: _client_tool(REQUEST_CONNECTION)},
    ),
    StaticEntry(
        slug="__sx__request_input",
        kind=KIND_TOOL,
        name="Request input",
        description="Client tool: ask the person for structured input.",
        embeddable=True,
        versions={1: _client_tool(REQUEST_INPUT)},
    ),
)


def validate_catalog(entries) -> dict[str, StaticEntry]:
    """Check the catalog's invariants and index it by slug.

    Raises:
        ImproperlyConfigured: a slug outside the reserved prefix or repeated, an unknown kind, or a
            ``latest`` that is not one of the entry's versions.
    """
    index: dict[str, StaticEntry] = {}
    for entry in entries:
        if not is_reserved(entry.slug):
            raise ImproperlyConfigured(f"Static catalog slug '{entry.slug}' must start with '{RESERVED_SLUG_PREFIX}'.")
        if entry.slug in index:
            raise ImproperlyConfigured(f"Static catalog slug '{entry.slug}' is declared twice.")
        if entry.kind not in KINDS:
            raise ImproperlyConfigured(f"Static catalog entry '{entry.slug}' has unknown kind '{entry.kind}'.")
        if entry.latest not in entry.versions or not all(isinstance(v, int) and v >= 1 for v in entry.versions):
            raise ImproperlyConfigured(f"Static catalog entry '{entry.slug}' has bad versions.")
        index[entry.slug] = entry
    return index


#: slug -> entry, in declaration order (the overlay iterates it in this order); ``register_entry`` adds the
#: entries other modules of the kit declare.
STATIC_CATALOG: dict[str, StaticEntry] = validate_catalog(_ENTRIES)


def register_entry(entry: StaticEntry) -> None:
    """Add an entry declared by a module that itself reads this catalog (the build kit's ``__sx__build_kit``,
    ``overlay.BUILD_KIT_ENTRY``, added by ``BuildKitConfig.ready``), so the catalog never imports it back.

    Adding the same entry again does nothing.

    Raises:
        ImproperlyConfigured: the entry breaks an invariant of ``validate_catalog`` (another entry has its slug).
    """
    if STATIC_CATALOG.get(entry.slug) is not entry:
        STATIC_CATALOG.update(validate_catalog([*STATIC_CATALOG.values(), entry]))


def get_entry(slug: str) -> StaticEntry | None:
    """The catalog entry for ``slug``, or ``None``."""
    return STATIC_CATALOG.get(slug)
