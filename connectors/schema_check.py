"""Check every existing table against :mod:`connectors.schema` before the flow writes to it.

``CREATE TABLE IF NOT EXISTS`` accepts any table of that name: one made earlier by ILP
auto-creation, by an older pairstream or by hand, without DEDUP (every retry, replay and
recovery would then duplicate rows) or with other column types (every write would be refused).
So at start each table either

* is created from the schema (missing),
* is fixed where that is safe, and the fix is logged: DEDUP off or on other keys →
  ``ALTER TABLE t DEDUP ENABLE UPSERT KEYS(...)`` (DEDUP is metadata: existing rows stay as
  they are, new writes become idempotent); a column the schema added later that is not part of
  the identity → ``ALTER TABLE t ADD COLUMN c TYPE`` (old rows read NULL there, as they would
  if ILP had added the column); an identity column a later version added with a value every
  older row has (``Table.key_backfill``: ``preset = 'default'`` in pair_analytics and signals
  of the version before presets) → ADD COLUMN, ``UPDATE t SET c = value``, then the DEDUP key,
* or stops start-up with one line naming the table, the column and the fix: not WAL, another
  designated timestamp or partitioning, a column of another type, or any other missing identity
  column (old rows would hold NULL in a DEDUP key and never match the new rows of the same
  instant, so filling it is the user's decision).

The check reads QuestDB's own catalogue: ``tables()`` (WAL, designated timestamp, partitioning,
DEDUP) and ``table_columns('t')`` (types, ``upsertKey``). Generic over ``schema.TABLES``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from connectors.questdb_http import QuestDBError, QuestDBHttp
from connectors.schema import Table

log = logging.getLogger("pairstream.questdb")

# Types a column may have instead of the schema's and still take the flow's ILP writes.
COMPATIBLE = {"VARCHAR": {"VARCHAR", "STRING"}}


class SchemaMismatch(QuestDBError):
    """An existing table the flow cannot write safely; the message names table, column, fix."""


def _rebuild(t: Table) -> str:
    return (
        f"rename it (RENAME TABLE {t.name} TO {t.name}_old) or drop it, "
        f"and pairstream creates it anew"
    )


def _mismatch(http: QuestDBHttp, t: Table, meta: dict) -> tuple[list[str], str]:
    """(safe fixes as SQL, first unsafe problem or "") for one existing table."""
    if not meta["walEnabled"]:
        return [], (
            f"table {t.name} is not a WAL table; fix: ALTER TABLE {t.name} SET TYPE WAL and "
            f"restart QuestDB, or {_rebuild(t)}"
        )
    if meta["designatedTimestamp"] != "ts":
        return [], (
            f"table {t.name}: designated timestamp is {meta['designatedTimestamp'] or 'none'}, "
            f"pairstream needs ts; fix: {_rebuild(t)}"
        )
    if meta["partitionBy"] != "DAY":
        return [], (
            f"table {t.name} is partitioned by {meta['partitionBy']}, pairstream needs "
            f"PARTITION BY DAY; fix: {_rebuild(t)}"
        )
    cols = {
        r["column"]: r
        for r in http.query(f"SELECT \"column\", type, upsertKey FROM table_columns('{t.name}')")
    }
    fixes: list[str] = []
    for c, typ in (("ts", "TIMESTAMP"), *t.columns):
        have = cols.get(c)
        if have is None:
            fill = dict(t.key_backfill).get(c)
            if fill is not None:  # a key a later version added: every older row has ``fill``
                fixes += [f"ALTER TABLE {t.name} ADD COLUMN {c} {typ}",
                          f"UPDATE {t.name} SET {c} = {fill}"]
                continue
            if c in t.keys:
                return [], (
                    f"table {t.name}: column {c} ({typ}, part of the DEDUP key) is missing; "
                    f"fix: ALTER TABLE {t.name} ADD COLUMN {c} {typ}, fill it for the rows "
                    f"already there (UPDATE {t.name} SET {c} = ...), or {_rebuild(t)}"
                )
            fixes.append(f"ALTER TABLE {t.name} ADD COLUMN {c} {typ}")
        elif have["type"] not in COMPATIBLE.get(typ, {typ}):
            return [], (
                f"table {t.name}: column {c} is {have['type']}, pairstream writes {typ}; fix: "
                f"ALTER TABLE {t.name} ALTER COLUMN {c} TYPE {typ}, or {_rebuild(t)}"
            )
    keys = {"ts", *t.keys}
    have_keys = {c for c, r in cols.items() if r["upsertKey"]} if meta["dedup"] else set()
    if have_keys != keys:
        fixes.append(f"ALTER TABLE {t.name} DEDUP ENABLE UPSERT KEYS({', '.join(('ts', *t.keys))})")
    return fixes, ""


def check_tables(http: QuestDBHttp, tables: Iterable[Table]) -> None:
    """Create missing tables, fix what is safe (logged), raise SchemaMismatch otherwise."""
    tables = list(tables)
    meta = {
        r["table_name"]: r
        for r in http.query(
            "SELECT table_name, designatedTimestamp, partitionBy, walEnabled, dedup FROM tables()"
        )
    }
    for t in tables:
        m = meta.get(t.name)
        if m is None:
            http.exec(t.ddl())
            continue
        fixes, problem = _mismatch(http, t, m)
        if problem:
            raise SchemaMismatch(problem)
        for sql in fixes:  # one statement each: QuestDB runs no multi-column ALTER on WAL
            http.exec(sql)
        if fixes:
            http.wait_applied([t.name])  # WAL applies ALTERs later: the next check sees them
            log.warning("questdb: table %s did not match the schema; ran: %s", t.name,
                        "; ".join(fixes))
