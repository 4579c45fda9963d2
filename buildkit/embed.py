"""The ``@ag.embed`` resolver: replace embed objects by the documents they reference.

An embed is any JSON object holding the key ``@ag.embed``::

    {"@ag.embed": {"@ag.references": {"workflow": {"slug": "research-agent", "version": 3}},
                   "@ag.selector": {"path": "tools.0"}}}

The **whole** object is replaced (sibling keys are dropped) by the referenced document:

- a reserved ``__sx__`` slug: the static catalog entry's document (``buildkit.catalog``), at the
  pinned version or the entry's latest; never looked up in the database;
- any other slug: that agent type's committed template, at the pinned version or its latest revision.

``@ag.selector.path`` picks a dotted path of the document (``tools.0.name``; list positions are
numbers). What replaces the embed is resolved in turn, depth first.

Limits and errors (each error type carries the dotted ``path`` where it happened):

- nesting deeper than ``max_depth`` (10) embeds → ``EmbedDepthExceeded``;
- more than ``max_embeds`` (100) embeds in one resolution → ``EmbedLimitExceeded``;
- more than ``MAX_EMBEDDED_BYTES`` (2 MiB) of embedded documents in one resolution (compact JSON, summed over
  the embeds) → ``EmbedSizeExceeded``, so a resolution's work and answer stay bounded whatever is stored;
- a document met again on its own chain of embeds (same slug and version) → ``CircularEmbed``;
- an unknown slug or version → ``EmbedNotFound``; a selector path that is not there →
  ``EmbedSelectorMiss`` (a kind of miss);
- a catalog entry that is not embeddable (``__sx__build_kit``) → ``NonEmbeddableReference``;
- a document that would nest deeper than ``MAX_NESTING`` (64) levels once the embed is replaced
  (embeds placed deep inside one another) → ``EmbedNestingExceeded``;
- a malformed embed object → ``InvalidEmbed``.

``error_policy`` says what an error does: ``exception`` (default) raises it; ``placeholder``
replaces the embed with ``"<error:ErrorType>"``; ``keep`` leaves the embed object as it was. The
last two record the error in ``Resolution.errors`` and go on.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agents.models import AgentTypeRevision
from syndarix.exceptions import InvalidInput
from syndarix.jsondoc import check_json_document

from .catalog import InvalidVersion, get_entry, is_reserved, normalize_version

EMBED_KEY = "@ag.embed"
REFERENCES_KEY = "@ag.references"
SELECTOR_KEY = "@ag.selector"
MAX_DEPTH = 10
MAX_EMBEDS = 100
#: Deepest nesting of objects and arrays a resolved document may reach (the template limit,
#: ``schema.TEMPLATE_MAX_NESTING``): each embedded template is within it, but a chain of embeds
#: placed deep inside one another could otherwise multiply it.
MAX_NESTING = 64
#: Most bytes (compact UTF-8 JSON) of embedded documents one resolution inserts, summed over its embeds: 100
#: embeds of a 512 KiB template would otherwise build a 50 MiB answer.
MAX_EMBEDDED_BYTES = 2 * 1024 * 1024

POLICY_EXCEPTION = "exception"
POLICY_PLACEHOLDER = "placeholder"
POLICY_KEEP = "keep"
ERROR_POLICIES = (POLICY_EXCEPTION, POLICY_PLACEHOLDER, POLICY_KEEP)

SOURCE_STATIC = "static"
SOURCE_AGENT_TYPE = "agent_type"


class EmbedError(InvalidInput):
    """Base of the resolver's errors (400); ``path`` is the dotted location of the failing embed."""

    code = "embed_error"

    def __init__(self, message: str, *, path: str, reference: str | None = None, **extra: Any) -> None:
        super().__init__(message, field=path or None, path=path, reference=reference, **extra)
        self.path = path
        self.reference = reference

    def as_dict(self) -> dict[str, Any]:
        """The error as a ``Resolution.errors`` item: ``{"type", "code", "message", "path", "reference"}``."""
        return {
            "type": type(self).__name__,
            "code": self.code,
            "message": self.message,
            "path": self.path,
            "reference": self.reference,
        }


class InvalidEmbed(EmbedError):
    code = "invalid_embed"


class EmbedNotFound(EmbedError):
    code = "embed_not_found"


class EmbedSelectorMiss(EmbedNotFound):
    code = "embed_selector_miss"


class CircularEmbed(EmbedError):
    code = "circular_embed"


class EmbedDepthExceeded(EmbedError):
    code = "embed_depth_exceeded"


class EmbedLimitExceeded(EmbedError):
    code = "embed_limit_exceeded"


class EmbedSizeExceeded(EmbedError):
    code = "embed_too_large"


class NonEmbeddableReference(EmbedError):
    code = "non_embeddable_reference"


class EmbedNestingExceeded(EmbedError):
    code = "embed_nesting_exceeded"


@dataclass(frozen=True)
class Reference:
    """What an embed points at: a workflow ``slug`` and an optional pinned ``version``."""

    slug: str
    version: int | None = None

    def __str__(self) -> str:
        return f"workflow:{self.slug}" + (f"@v{self.version}" if self.version else "")


@dataclass(frozen=True)
class Loaded:
    """A fetched document and where it came from (``source`` is ``static`` or ``agent_type``)."""

    slug: str
    version: int
    source: str
    document: Any = field(repr=False)

    @property
    def identity(self) -> str:
        """The canonical name cycles are detected by: ``<source>:<slug>:v<version>``."""
        return f"{self.source}:{self.slug}:v{self.version}"


def format_path(base: str, parts: tuple) -> str:
    """Dotted path: ``format_path("template", ("tools", 3))`` → ``"template.tools.3"``."""
    return ".".join([p for p in (base,) if p] + [str(p) for p in parts])


def is_embed(node: Any) -> bool:
    """True for a JSON object that holds ``@ag.embed``."""
    return isinstance(node, dict) and EMBED_KEY in node


def embed_slug(node: Any) -> str | None:
    """The workflow slug an embed object references, or ``None`` (not an embed, or malformed)."""
    if not is_embed(node):
        return None
    refs = node[EMBED_KEY].get(REFERENCES_KEY) if isinstance(node[EMBED_KEY], dict) else None
    workflow = refs.get("workflow") if isinstance(refs, dict) else None
    slug = workflow.get("slug") if isinstance(workflow, dict) else None
    return slug if isinstance(slug, str) and slug else None


def iter_embeds(node: Any, parts: tuple = ()) -> Iterator[tuple[tuple, dict]]:
    """Yield ``(path parts, embed object)`` for every embed in ``node`` (not inside other embeds)."""
    if is_embed(node):
        yield parts, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from iter_embeds(value, (*parts, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from iter_embeds(value, (*parts, index))


def parse_embed(node: dict, *, path: str) -> tuple[Reference, str | None]:
    """Read an embed object into its ``Reference`` and selector path (or ``None``).

    Raises:
        InvalidEmbed: the object does not have the shape in this module's docstring.
    """
    body = node.get(EMBED_KEY)
    if not isinstance(body, dict) or set(body) - {REFERENCES_KEY, SELECTOR_KEY}:
        raise InvalidEmbed(f"'{EMBED_KEY}' must hold only '{REFERENCES_KEY}' and '{SELECTOR_KEY}'.", path=path)
    refs = body.get(REFERENCES_KEY)
    if not isinstance(refs, dict) or set(refs) != {"workflow"}:
        raise InvalidEmbed(f"'{REFERENCES_KEY}' must hold exactly one 'workflow' reference.", path=path)
    workflow = refs["workflow"]
    if not isinstance(workflow, dict) or set(workflow) - {"slug", "version"}:
        raise InvalidEmbed("A workflow reference is {\"slug\": ..., \"version\"?: ...}.", path=path)
    slug = workflow.get("slug")
    if not isinstance(slug, str) or not slug:
        raise InvalidEmbed("A workflow reference needs a 'slug'.", path=path)
    version = None
    if workflow.get("version") is not None:
        try:
            version = normalize_version(workflow["version"])
        except InvalidVersion as exc:
            raise InvalidEmbed(exc.message, path=path, reference=f"workflow:{slug}") from exc
    selector = body.get(SELECTOR_KEY)
    selector_path = None
    if selector is not None:
        if not isinstance(selector, dict) or set(selector) != {"path"} or not isinstance(selector["path"], str) \
                or not selector["path"]:
            raise InvalidEmbed(f"'{SELECTOR_KEY}' is {{\"path\": \"dotted.path\"}}.", path=path)
        selector_path = selector["path"]
    return Reference(slug, version), selector_path


def select(document: Any, selector_path: str, *, path: str, reference: str) -> Any:
    """The value at ``selector_path`` (dotted; numbers index lists) in ``document``.

    Raises:
        EmbedSelectorMiss: a segment is not there.
    """
    value = document
    for segment in selector_path.split("."):
        if isinstance(value, dict) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            raise EmbedSelectorMiss(
                f"The selector path '{selector_path}' is not in {reference}.", path=path, reference=reference
            )
    return value


class DocumentLoader:
    """Fetches referenced documents, once per (slug, version) for the loader's lifetime.

    One database query per distinct agent-type reference; static catalog entries cost none.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int | None], Loaded | None] = {}

    def load(self, ref: Reference, *, path: str, embedding: bool = True) -> Loaded:
        """Fetch ``ref``.

        Args:
            embedding: True when the document is being embedded (non-embeddable catalog entries
                are refused); False for a top-level fetch.

        Raises:
            EmbedNotFound: no such slug or version (a reserved slug never falls through to the database).
            NonEmbeddableReference: ``embedding`` and the catalog entry is not embeddable.
        """
        if is_reserved(ref.slug):
            entry = get_entry(ref.slug)
            if entry is None:
                raise EmbedNotFound(f"No platform workflow '{ref.slug}'.", path=path, reference=str(ref))
            if embedding and not entry.embeddable:
                raise NonEmbeddableReference(
                    f"'{ref.slug}' can be fetched but not embedded.", path=path, reference=str(ref)
                )
            version = ref.version or entry.latest
            if version not in entry.versions:
                raise EmbedNotFound(f"'{ref.slug}' has no version {version}.", path=path, reference=str(ref))
            return Loaded(ref.slug, version, SOURCE_STATIC, entry.document(version))
        key = (ref.slug, ref.version)
        if key not in self._cache:
            revisions = AgentTypeRevision.objects.filter(agent_type__slug=ref.slug)
            if ref.version:
                revisions = revisions.filter(version=ref.version)
            row = revisions.order_by("-version").values("version", "template").first()
            self._cache[key] = Loaded(ref.slug, row["version"], SOURCE_AGENT_TYPE, row["template"]) if row else None
        loaded = self._cache[key]
        if loaded is None:
            what = f"version {ref.version} of '{ref.slug}'" if ref.version else f"a committed revision of '{ref.slug}'"
            raise EmbedNotFound(f"There is no {what}.", path=path, reference=str(ref))
        return Loaded(loaded.slug, loaded.version, loaded.source, copy.deepcopy(loaded.document))


@dataclass
class Resolution:
    """The outcome of one resolution.

    Attributes:
        value: the document with its embeds replaced (a new object; the input is untouched).
        references_used: ``[{"slug", "version", "source"}]``, each document once, in first-use order.
        depth_reached: the deepest embed nesting resolved (0: none).
        embeds_resolved: how many embeds were replaced.
        errors: the errors met under ``placeholder`` / ``keep`` (``EmbedError.as_dict()`` items).
    """

    value: Any = None
    references_used: list[dict[str, Any]] = field(default_factory=list)
    depth_reached: int = 0
    embeds_resolved: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


class _Resolver:
    def __init__(self, *, loader: DocumentLoader, max_depth: int, max_embeds: int, error_policy: str, base_path: str):
        if error_policy not in ERROR_POLICIES:
            raise InvalidInput(f"error_policy must be one of {', '.join(ERROR_POLICIES)}.", field="error_policy")
        self.loader = loader
        self.max_depth = max_depth
        self.max_embeds = max_embeds
        self.policy = error_policy
        self.base_path = base_path
        self.result = Resolution()
        self.embedded_bytes = 0
        self._seen: set[str] = set()

    def walk(self, node: Any, parts: tuple, stack: tuple[str, ...], depth: int) -> Any:
        """``node`` with its embeds replaced; ``parts`` is its path, so ``len(parts) + 1`` its nesting level."""
        if isinstance(node, dict):
            if EMBED_KEY in node:
                return self.embed(node, parts, stack, depth)
            return {key: self.walk(value, (*parts, key), stack, depth) for key, value in node.items()}
        if isinstance(node, list):
            return [self.walk(value, (*parts, index), stack, depth) for index, value in enumerate(node)]
        return node

    def embed(self, node: dict, parts: tuple, stack: tuple[str, ...], depth: int) -> Any:
        path = format_path(self.base_path, parts)
        try:
            ref, selector_path = parse_embed(node, path=path)
            level = depth + 1
            if level > self.max_depth:
                raise EmbedDepthExceeded(
                    f"Embeds nest deeper than {self.max_depth}.", path=path, reference=str(ref), limit=self.max_depth
                )
            if self.result.embeds_resolved >= self.max_embeds:
                raise EmbedLimitExceeded(
                    f"More than {self.max_embeds} embeds.", path=path, reference=str(ref), limit=self.max_embeds
                )
            loaded = self.loader.load(ref, path=path, embedding=True)
            if loaded.identity in stack:
                cycle = [*stack[stack.index(loaded.identity):], loaded.identity]
                raise CircularEmbed(
                    f"Circular embed: {' → '.join(cycle)}.", path=path, reference=str(ref), cycle=cycle
                )
            value = loaded.document
            if selector_path is not None:
                value = select(value, selector_path, path=path, reference=str(ref))
            # the value takes the embed's place, at nesting level len(parts) + 1
            try:
                size = check_json_document(value, field=path, max_depth=MAX_NESTING - len(parts))
            except InvalidInput as exc:  # a stored document is otherwise storable: only its depth can fail here
                raise EmbedNestingExceeded(
                    f"Replacing this embed would nest the document deeper than {MAX_NESTING} levels.",
                    path=path, reference=str(ref), limit=MAX_NESTING,
                ) from exc
            if self.embedded_bytes + size > MAX_EMBEDDED_BYTES:
                raise EmbedSizeExceeded(
                    f"The embedded documents would exceed {MAX_EMBEDDED_BYTES} bytes in all.",
                    path=path, reference=str(ref), limit=MAX_EMBEDDED_BYTES,
                )
            self.embedded_bytes += size
        except EmbedError as exc:
            if self.policy == POLICY_EXCEPTION:
                raise
            self.result.errors.append(exc.as_dict())
            return f"<error:{type(exc).__name__}>" if self.policy == POLICY_PLACEHOLDER else copy.deepcopy(node)
        self.result.embeds_resolved += 1
        self.result.depth_reached = max(self.result.depth_reached, level)
        if loaded.identity not in self._seen:
            self._seen.add(loaded.identity)
            self.result.references_used.append(
                {"slug": loaded.slug, "version": loaded.version, "source": loaded.source}
            )
        return self.walk(value, parts, (*stack, loaded.identity), level)


def resolve_embeds(
    document: Any,
    *,
    max_depth: int = MAX_DEPTH,
    max_embeds: int = MAX_EMBEDS,
    error_policy: str = POLICY_EXCEPTION,
    base_path: str = "template",
    loader: DocumentLoader | None = None,
    root: Loaded | None = None,
) -> Resolution:
    """Resolve every embed in ``document`` (which is never changed).

    Args:
        max_depth: deepest embed nesting allowed (embeds), at most ``MAX_DEPTH``.
        max_embeds: most embeds replaced in this resolution, at most ``MAX_EMBEDS``.
        error_policy: ``exception`` | ``placeholder`` | ``keep`` (module docstring).
        base_path: prefix of the dotted paths in errors (``template`` → ``template.tools.2``).
        root: when ``document`` was itself fetched by reference, that document, so an embed of it
            inside itself is a cycle.

    Returns a ``Resolution``.

    Raises:
        EmbedError: any resolver error, under ``error_policy="exception"``.
        InvalidInput: an unknown ``error_policy``.
    """
    resolver = _Resolver(
        loader=loader or DocumentLoader(),
        max_depth=min(max_depth, MAX_DEPTH),
        max_embeds=min(max_embeds, MAX_EMBEDS),
        error_policy=error_policy,
        base_path=base_path,
    )
    stack: tuple[str, ...] = ()
    if root is not None:
        stack = (root.identity,)
        resolver._seen.add(root.identity)
        resolver.result.references_used.append({"slug": root.slug, "version": root.version, "source": root.source})
    resolver.result.value = resolver.walk(document, (), stack, 0)
    return resolver.result


def resolve_reference(
    slug: str,
    version: Any = None,
    *,
    max_depth: int = MAX_DEPTH,
    max_embeds: int = MAX_EMBEDS,
    error_policy: str = POLICY_EXCEPTION,
) -> Resolution:
    """Fetch the document ``slug`` names (latest, or ``version``) and resolve the embeds inside it.

    A top-level fetch may name a non-embeddable catalog entry (``__sx__build_kit`` is fetchable).

    Raises:
        EmbedNotFound: no such slug or version (always raised: there is nothing to resolve).
        InvalidVersion: ``version`` is malformed.
        EmbedError: as ``resolve_embeds``.
    """
    ref = Reference(slug, normalize_version(version, field="reference.version") if version is not None else None)
    loader = DocumentLoader()
    loaded = loader.load(ref, path="reference", embedding=False)
    return resolve_embeds(
        loaded.document, max_depth=max_depth, max_embeds=max_embeds, error_policy=error_policy,
        base_path="template", loader=loader, root=loaded,
    )
