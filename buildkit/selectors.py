"""Reads of the build kit: revisions, their diffs, playground replays, and capability search over agent
types and agent classes."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import QuerySet

from agents.models import AgentInstance, AgentType, AgentTypeRevision
from agents.registry import AgentRegistry, registry
from projects.models import Project
from syndarix.exceptions import NotFound
from syndarix.jsondoc import json_diff

from .catalog import normalize_version


def revision_queryset(agent_type: AgentType) -> QuerySet[AgentTypeRevision]:
    """``agent_type``'s revisions, newest first, with their author joined (one query per page)."""
    return AgentTypeRevision.objects.filter(agent_type=agent_type).select_related("author").order_by("-version")


def agent_type_latest_revision(agent_type: AgentType) -> AgentTypeRevision | None:
    """The highest-numbered revision of ``agent_type``, or ``None`` when it has none (one query)."""
    return revision_queryset(agent_type).first()


def spawned_with_key(*, project: Project, request_id: str) -> AgentInstance | None:
    """The agent whose spawn in ``project`` carried the ``Idempotency-Key`` ``request_id``, or ``None``.

    Its ``playground_run`` (when a playground run spawned it), ``agent_type_revision`` and
    ``project`` are joined (one query).
    """
    return (
        AgentInstance.objects.filter(project=project, transitions__from_status="", transitions__request_id=request_id)
        .select_related("playground_run", "agent_type_revision", "project")
        .first()
    )


def agent_type_revision_get(*, agent_type: AgentType, version: Any, field: str = "version") -> AgentTypeRevision:
    """Revision ``version`` (``3``, ``"3"`` or ``"v3"``) of ``agent_type``.

    Raises:
        InvalidVersion: ``version`` is malformed (400).
        NotFound: no such revision (404, code ``revision_not_found``).
    """
    number = normalize_version(version, field=field)
    revision = revision_queryset(agent_type).filter(version=number).first()
    if revision is None:
        raise NotFound(f"Agent type '{agent_type.slug}' has no revision {number}.", code="revision_not_found",
                       field=field)
    return revision


def agent_type_revision_diff(*, agent_type: AgentType, from_version: Any, to_version: Any) -> dict[str, Any]:
    """The RFC 6902 JSON Patch that turns revision ``from_version``'s template into ``to_version``'s.

    Returns ``{"agent_type_id", "from_version", "to_version", "patch": [{"op", "path", ...}]}``
    (an empty patch when the templates are equal).

    Raises: as ``agent_type_revision_get``.
    """
    first = agent_type_revision_get(agent_type=agent_type, version=from_version, field="from_version")
    second = agent_type_revision_get(agent_type=agent_type, version=to_version, field="to_version")
    return {
        "agent_type_id": agent_type.pk,
        "from_version": first.version,
        "to_version": second.version,
        "patch": template_diff(first.template, second.template),
    }


def template_diff(before: Any, after: Any) -> list[dict[str, Any]]:
    """RFC 6902 JSON Patch operations from ``before`` to ``after``, with a bounded cost (``json_diff``)."""
    return json_diff(before, after)


_WORD_RE = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "for", "from", "i", "in", "into", "is",
        "it", "me", "my", "of", "on", "or", "our", "so", "that", "the", "their", "them", "this", "to", "we",
        "what", "when", "which", "who", "will", "with", "you", "your", "need", "needs", "want", "wants", "agent",
        "agents",
    }
)


def _terms(text: str) -> list[str]:
    return [w for w in _WORD_RE.findall(text.lower()) if len(w) > 1 and w not in _STOPWORDS]


KIND_AGENT_TYPE = "agent_type"
KIND_AGENT_CLASS = "agent_class"


def _candidates(agent_registry: AgentRegistry | None = None) -> list[dict[str, Any]]:
    """What ``capabilities_find`` searches (one query): the active agent types, then each registered
    agent class that no agent type names as its ``handler`` (``agent_type_id`` ``None``)."""
    types = list(
        AgentType.objects.order_by("name").values(
            "id", "slug", "name", "description", "capabilities", "handler", "is_active"
        )
    )
    handlers = {row["handler"] for row in types if row["handler"]}
    candidates = [
        {"kind": KIND_AGENT_TYPE, "agent_type_id": row["id"], "slug": row["slug"], "name": row["name"],
         "description": row["description"], "capabilities": row["capabilities"], "agent_class": row["handler"] or None}
        for row in types if row["is_active"]
    ]
    candidates += [
        {"kind": KIND_AGENT_CLASS, "agent_type_id": None, "slug": d["slug"], "name": d["name"],
         "description": d["description"], "capabilities": d["capabilities"], "agent_class": d["slug"]}
        for d in (registry if agent_registry is None else agent_registry).definitions()
        if d["slug"] not in handlers
    ]
    return candidates


def capabilities_find(
    *, use_cases: list[str], limit: int = 5, agent_registry: AgentRegistry | None = None
) -> list[dict[str, Any]]:
    """Match plain-language use cases against the agent types and the agent classes (one query).

    Searched: every active agent type (``kind`` ``agent_type``), and every registered agent class
    (``agents.registry``) that no agent type names as its ``handler`` — one not yet synced to a type
    (``kind`` ``agent_class``, ``agent_type_id`` null: spawning it needs an agent type, e.g. from
    ``sync_agent_types``). A class behind an agent type is found through that type, and not at all
    when the type is inactive.

    A use case's words score a candidate: 3 for each capability that equals or contains the word,
    2 when its name or slug (or, for a type, its agent class) contains it, 1 when its description does.

    Returns ``[{"use_case", "matches": [{"kind", "agent_type_id", "slug", "name", "description",
    "capabilities", "agent_class", "score", "matched_terms"}]}]``, matches best first (at most
    ``limit``, only scores above zero).
    """
    candidates = _candidates(agent_registry)
    results = []
    for use_case in use_cases:
        terms = list(dict.fromkeys(_terms(use_case)))
        matches = []
        for candidate in candidates:
            capabilities = [str(c).lower() for c in candidate["capabilities"] or []]
            names = f"{candidate['name']} {candidate['slug']} {candidate['agent_class'] or ''}".lower()
            description = (candidate["description"] or "").lower()
            score, matched = 0, []
            for term in terms:
                gained = 3 * sum(1 for c in capabilities if term in c)
                gained += 2 if term in names else 0
                gained += 1 if term in description else 0
                if gained:
                    score += gained
                    matched.append(term)
            if score:
                matches.append({**candidate, "score": score, "matched_terms": matched})
        matches.sort(key=lambda m: (-m["score"], m["name"]))
        results.append({"use_case": use_case, "matches": matches[:limit]})
    return results
