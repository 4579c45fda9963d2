"""Database helpers shared by the apps' services."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from django.core.exceptions import EmptyResultSet
from django.db import IntegrityError, connections, models, transaction

from syndarix.exceptions import InvalidInput

T = TypeVar("T")


def save_unique(write: Callable[[], T], *, taken: Callable[[], bool], field: str, message: str) -> T:
    """Run ``write()`` (an insert or update) so that losing a race for a unique value is a 400, not a 500.

    Serializers and forms check uniqueness before saving, but two concurrent requests can both pass
    the check; the database's unique constraint then refuses the second write. ``write`` runs in a
    savepoint; when it raises ``IntegrityError`` and ``taken()`` (a query for the clashing row) is now
    true, the error becomes ``InvalidInput`` — the same answer the pre-check gives. Any other
    integrity error propagates unchanged.

    Returns what ``write`` returns.

    Raises:
        InvalidInput: 400 with code ``unique`` on ``field`` and ``message``.
    """
    try:
        with transaction.atomic():
            return write()
    except IntegrityError as exc:
        if taken():
            raise InvalidInput(message, code="unique", field=field) from exc
        raise


M = TypeVar("M", bound=models.Model)


def update_unique(
    instance: M, data: Mapping[str, Any], names: Iterable[str], *, taken: Callable[[], bool], field: str, message: str
) -> M:
    """Set the ``names`` present in ``data`` on ``instance`` and save just those (and ``updated_at``).

    Anything else in ``data`` is ignored; with nothing to change nothing is written. The save goes
    through ``save_unique`` with ``taken``, ``field`` and ``message``.

    Returns ``instance``.
    """
    changed = [name for name in names if name in data]
    for name in changed:
        setattr(instance, name, data[name])
    if changed:
        save_unique(
            lambda: instance.save(update_fields=[*changed, "updated_at"]), taken=taken, field=field, message=message
        )
    return instance


#: Compiled queries ``evaluate_compiled_once`` keeps per thread (the least recently used go first).
COMPILED_QUERIES = 256

_compiled = threading.local()


def evaluate_compiled_once(queryset: models.QuerySet[M], key: Hashable) -> list[M]:
    """``list(queryset)``, with the SQL Django compiled for an earlier queryset of the same ``key`` (in this thread).

    Django compiles a queryset's SQL on every evaluation; for a query with joins and annotations (a page of agents)
    that costs more than the database takes to run it. The first queryset of a ``key`` is compiled as usual and its
    compiler kept (``COMPILED_QUERIES`` per thread, each thread with its own database connections); a later one runs
    that compiled SQL with its parameters and builds its rows from that compiler's column layout. Everything else
    comes from ``queryset`` itself: the rows it reads now, the related objects it already knows (a project's agents
    get that project instance).

    The caller's contract: every queryset given the same ``key`` compiles to the same SQL and parameters, so the key
    must name everything the queryset is built from (for a list: the view, its project, the request's query string,
    the page's bounds). A key that names too much only compiles more often; one that names too little answers with
    another query's rows.

    Args:
        queryset: an unevaluated queryset of model instances (sliced or not).
        key: any hashable; the database alias is added to it.

    Returns:
        The model instances, as ``list(queryset)`` would.
    """
    cache = getattr(_compiled, "compilers", None)
    if cache is None:
        cache = _compiled.compilers = OrderedDict()
    key = (queryset.db, key)
    queryset = queryset.all()  # a clone of its own: no clone of the caller's inherits the kept compiler
    compiler = cache.get(key)
    if compiler is None or compiler.connection is not connections[queryset.db]:  # compiled on a replaced connection
        compiler = queryset.query.get_compiler(using=queryset.db)
        try:
            compiled = compiler.as_sql()  # also fills the column layout (select, klass_info, annotation_col_map)
        except EmptyResultSet:
            return []  # a query that can match nothing (Django runs none either)
        compiler.as_sql = lambda *args, **kwargs: compiled
        cache[key] = compiler
        if len(cache) > COMPILED_QUERIES:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    queryset.query.get_compiler = lambda *args, **kwargs: compiler
    return list(queryset)


def fetch_compiled(key: Hashable, build: Callable[[], models.QuerySet], params: Sequence[Any]) -> list:
    """``list(build())``, with the SQL of the first ``build()`` of ``key`` (in this thread) run again with ``params``.

    For the hot reads of one row by its ids (a run's agent locked at a step boundary, a context's current version):
    building and compiling such a queryset costs several times what the database takes to answer it. ``build``
    makes the queryset, and is called only while ``key`` has no compiled SQL yet; ``params`` are that SQL's
    parameters in their order in the SQL, each the value Django itself binds (a ``uuid.UUID`` for a UUID column).
    The first call checks that ``build()`` compiles to exactly ``params``; a queryset that does not (a lookup that
    adds or converts parameters) is never kept, and each call compiles it as Django does. Compiled queries share
    ``evaluate_compiled_once``'s per-thread cache of ``COMPILED_QUERIES``.

    Args:
        key: any hashable naming the query's shape (everything ``build`` makes it from but ``params``).
        build: returns an unevaluated queryset (of model instances, or ``values_list`` rows).
        params: the queryset's SQL parameters.

    Returns:
        The rows, as ``list(build())`` would.
    """
    cache = getattr(_compiled, "compilers", None)
    if cache is None:
        cache = _compiled.compilers = OrderedDict()
    params = tuple(params)
    kept = cache.get(("fetch", key))
    if kept is None or kept[1].connection is not connections[kept[0].db]:
        queryset = build()
        compiler = queryset.query.get_compiler(using=queryset.db)
        try:
            sql, compiled_params = compiler.as_sql()
        except EmptyResultSet:
            return []
        if [(type(p), p) for p in compiled_params] != [(type(p), p) for p in params]:
            params = compiled_params  # parameters other than ``params``: this call only, compiled as Django does
        else:
            cache[("fetch", key)] = (queryset, compiler, sql)
            if len(cache) > COMPILED_QUERIES:
                cache.popitem(last=False)
        queryset = queryset.all()
    else:
        cache.move_to_end(("fetch", key))
        template, compiler, sql = kept
        queryset = template.all()
    compiler.as_sql = lambda *args, **kwargs: (sql, params)  # this thread's own compiler, set for this call
    queryset.query.get_compiler = lambda *args, **kwargs: compiler
    return list(queryset)


def send_integers_whole() -> None:
    """Make psycopg send the 16- and 32-bit integer parameters Django gives it as 64-bit ones.

    Django wraps the values of integer fields and expressions in psycopg's ``Int2`` and ``Int4`` (for an ``int``
    in an expression such as ``F("tokens") + n`` as well). Bound on the server (``DATABASE_PREPARED_STATEMENTS``),
    psycopg's binary dumpers of those truncate a larger value modulo 2^16 or 2^32 without an error: a counter of
    2,147,483,652 plus 2,147,483,658 tokens became 14, and a filter for a version past 2^32 would match a small one.
    Sent as ``bigint``, PostgreSQL adds and compares them whole and refuses one too large for its column, as with
    client-side binding. Registered on psycopg's global adapters (``SyndarixAdminConfig.ready``), from which Django
    builds its connections'.
    """
    from psycopg import adapters
    from psycopg.types.numeric import Int2, Int4, Int8BinaryDumper, Int8Dumper

    for wrapper in (Int2, Int4):
        adapters.register_dumper(wrapper, Int8Dumper)
        adapters.register_dumper(wrapper, Int8BinaryDumper)
