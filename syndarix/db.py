"""Database helpers shared by the apps' services."""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from django.core.exceptions import EmptyResultSet
from django.db import IntegrityError, connections, models, transaction
from django.db.models.sql.compiler import SQLCompiler
from django.db.transaction import TransactionManagementError

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


#: Compiled queries ``evaluate_compiled_once`` and ``fetch_compiled`` keep per process (the least recently used go
#: first).
COMPILED_QUERIES = 1024

# Shared by the process's threads: a worker runs each of hundreds of runs on a thread of its own, so SQL compiled per
# thread was compiled again for nearly every run. What is kept is the SQL and the compiler's column layout; each call
# runs them on its own thread's connection (``_bound``).
_compiled: OrderedDict[Hashable, tuple] = OrderedDict()
_compiled_lock = threading.Lock()


def _kept(key: Hashable) -> tuple | None:
    with _compiled_lock:
        kept = _compiled.get(key)
        if kept is not None:
            _compiled.move_to_end(key)
        return kept


def _keep(key: Hashable, value: tuple) -> None:
    with _compiled_lock:
        _compiled[key] = value
        while len(_compiled) > COMPILED_QUERIES:
            _compiled.popitem(last=False)


def _unbound(compiler: SQLCompiler) -> SQLCompiler:
    """``compiler`` to keep: without the compiling thread's connection (each call binds its own)."""
    compiler.connection = None
    return compiler


def _bound(compiler: SQLCompiler, sql: str, params: tuple, queryset: models.QuerySet) -> models.QuerySet:
    """``queryset`` set to run ``sql`` with ``params`` and build its rows from ``compiler``'s column layout, on this
    thread's connection (a shallow copy of the compiler: its layout is only read once it is compiled)."""
    bound = copy.copy(compiler)
    bound.connection = connections[queryset.db]
    bound.as_sql = lambda *args, **kwargs: (sql, params)
    queryset.query.get_compiler = lambda *args, **kwargs: bound
    return queryset


def evaluate_compiled_once(queryset: models.QuerySet[M], key: Hashable) -> list[M]:
    """``list(queryset)``, with the SQL Django compiled for an earlier queryset of the same ``key`` (in this process).

    Django compiles a queryset's SQL on every evaluation; for a query with joins and annotations (a page of agents)
    that costs more than the database takes to run it. The first queryset of a ``key`` is compiled as usual and its
    SQL and column layout kept (``COMPILED_QUERIES`` per process); a later one runs that SQL on its own thread's
    connection and builds its rows from that layout. Everything else comes from ``queryset`` itself: the rows it
    reads now, the related objects it already knows (a project's agents get that project instance).

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
    key = ("evaluate", queryset.db, key)
    queryset = queryset.all()  # a clone of its own: no clone of the caller's inherits the kept compiler
    kept = _kept(key)
    if kept is None:
        # Compiled from a clone of its own: the kept compiler references no queryset a call binds.
        compiler = queryset.all().query.get_compiler(using=queryset.db)
        try:
            sql, params = compiler.as_sql()  # also fills the column layout (select, klass_info, annotation_col_map)
        except EmptyResultSet:
            return []  # a query that can match nothing (Django runs none either)
        _keep(key, kept := (_unbound(compiler), sql, params))
    return list(_bound(*kept, queryset))


def fetch_compiled(key: Hashable, build: Callable[[], models.QuerySet], params: Sequence[Any]) -> list:
    """``list(build())``, with the SQL of the first ``build()`` of ``key`` (in this process) run again with ``params``.

    For the hot reads of one row by its ids (a run's agent locked at a step boundary, a context's current version):
    building and compiling such a queryset costs several times what the database takes to answer it. ``build``
    makes the queryset, and is called only while ``key`` has no compiled SQL yet; ``params`` are that SQL's
    parameters in their order in the SQL, each the value Django itself binds (a ``uuid.UUID`` for a UUID column).
    The first call checks that ``build()`` compiles to exactly ``params``; a queryset that does not (a lookup that
    adds or converts parameters) is never kept, and each call compiles it as Django does. The queryset must know
    no related objects of its own (build it from the model's manager, not a related manager): later calls read
    rows through the first one. Compiled queries share ``evaluate_compiled_once``'s cache.

    Args:
        key: any hashable naming the query's shape (everything ``build`` makes it from but ``params``).
        build: returns an unevaluated queryset (of model instances, or ``values_list`` rows).
        params: the queryset's SQL parameters.

    Returns:
        The rows, as ``list(build())`` would.
    """
    key, params = ("fetch", key), tuple(params)
    kept = _kept(key)
    if kept is None:
        queryset = build()
        compiler = queryset.query.get_compiler(using=queryset.db)
        try:
            sql, compiled_params = compiler.as_sql()
        except EmptyResultSet:
            return []
        if [(type(p), p) for p in compiled_params] != [(type(p), p) for p in params]:
            return list(_bound(compiler, sql, compiled_params, queryset.all()))  # other parameters: not kept
        _keep(key, kept := (queryset, _unbound(compiler), sql))
    template, compiler, sql = kept
    if template.query.select_for_update and connections[template.db].get_autocommit():
        # Django checks this when it compiles; the kept SQL is not compiled again.
        raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
    return list(_bound(compiler, sql, params, template.all()))


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
