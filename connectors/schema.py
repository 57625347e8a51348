"""The one place that knows every QuestDB table: DDL, DEDUP keys and record mapping.

Every table has the designated timestamp ``ts``, daily partitions, WAL and
``DEDUP UPSERT KEYS(ts, <identity>)``, so any write (retry, replay, recovery) is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pairstream.records import (
    AlertEvent,
    Analytics,
    BacktestResult,
    Bar,
    Health,
    Mark,
    PairBar,
    PairScan,
    Signal,
    Tick,
    TickBatch,
)


@dataclass(frozen=True)
class Table:
    """A QuestDB table fed from one record type."""

    name: str
    record: type
    columns: tuple[tuple[str, str], ...]  # (column, QuestDB type), ``ts`` excluded
    keys: tuple[str, ...]  # identity columns besides ``ts``
    # identity columns added by a later version, with the value every older row has (SQL literal):
    # the start-up check fills them in before it extends the DEDUP key (schema_check)
    key_backfill: tuple[tuple[str, str], ...] = ()

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(c for c, t in self.columns if t == "SYMBOL")

    def ddl(self) -> str:
        cols = ", ".join(f"{c} {t}" for c, t in (("ts", "TIMESTAMP"), *self.columns))
        keys = ", ".join(("ts", *self.keys))
        return (
            f"CREATE TABLE IF NOT EXISTS {self.name} ({cols}) timestamp(ts) "
            f"PARTITION BY DAY WAL DEDUP UPSERT KEYS({keys})"
        )

    def row(self, rec: Any) -> tuple[dict[str, str], dict[str, Any]]:
        """Split a record into (symbols, columns) for ``Sender.row``; None columns are omitted."""
        symbols: dict[str, str] = {}
        columns: dict[str, Any] = {}
        for c, t in self.columns:
            v = getattr(rec, c)
            if v is None:
                continue
            if t == "SYMBOL":
                symbols[c] = v
            elif t == "DOUBLE":
                columns[c] = float(v)  # numpy scalars are not accepted by the client
            elif t == "LONG":
                columns[c] = int(v)
            else:
                columns[c] = v
        return symbols, columns


_D = "DOUBLE"
_S = "SYMBOL"

TICKS = Table(
    "ticks",
    Tick,
    (
        ("symbol", _S),
        ("price", _D),
        ("qty", _D),
        ("trade_id", "LONG"),
        ("first_id", "LONG"),
        ("last_id", "LONG"),
        ("buyer_maker", "BOOLEAN"),
    ),
    ("symbol", "trade_id"),
)
BARS = Table(
    "bars",
    Bar,
    (
        ("symbol", _S),
        ("tf", _S),
        ("open", _D),
        ("high", _D),
        ("low", _D),
        ("close", _D),
        ("volume", _D),
        ("quote_volume", _D),
        ("trades", "LONG"),
        ("taker_buy_volume", _D),
        ("vwap", _D),
        ("filled", "BOOLEAN"),
    ),
    ("symbol", "tf"),
)
PAIR_ANALYTICS = Table(
    "pair_analytics",
    Analytics,
    (
        ("pair", _S),
        ("tf", _S),
        ("y", _D),
        ("x", _D),
        ("beta", _D),
        ("alpha", _D),
        ("spread", _D),
        ("zscore", _D),
        ("corr", _D),
        ("adf_p", _D),
        ("beta_kf", _D),
        ("alpha_kf", _D),
        ("z_kf", _D),
        ("half_life", _D),
        ("warm", "BOOLEAN"),
        ("preset", _S),
    ),
    ("pair", "tf", "preset"),
    (("preset", "'default'"),),  # rows written before presets are the base window set
)
SIGNALS = Table(
    "signals",
    Signal,
    (
        ("pair", _S),
        ("tf", _S),
        ("zscore", _D),
        ("position", "LONG"),
        ("action", _S),
        ("beta", _D),
        ("y", _D),
        ("x", _D),
        ("pnl", _D),
        ("fees", _D),
        ("cum_pnl", _D),
        ("hedge", _D),
        ("funding", _D),
        ("cum_funding", _D),
        ("preset", _S),
    ),
    ("pair", "tf", "preset"),
    (("preset", "'default'"),),  # rows written before presets are the base window set
)
ALERTS = Table(
    "alerts",
    AlertEvent,
    (
        ("rule_id", _S),
        ("pair", _S),
        ("tf", _S),
        ("state", _S),
        ("severity", _S),
        ("expr", "VARCHAR"),
        ("value", _D),
        ("message", "VARCHAR"),
    ),
    ("rule_id", "pair", "tf"),
)
# ``<symbol>@markPrice@1s``: one row per symbol and event second (live source)
MARKS = Table(
    "marks",
    Mark,
    (
        ("symbol", _S),
        ("mark", _D),
        ("index", _D),
        ("funding_rate", _D),
        ("next_funding_ts", "TIMESTAMP"),
    ),
    ("symbol",),
)
FEED_HEALTH = Table(
    "feed_health",
    Health,
    (("symbol", _S), ("metric", _S), ("value", _D)),
    ("symbol", "metric"),
)

_L = "LONG"
BACKTESTS = Table(
    "backtests",
    BacktestResult,
    (
        ("pair", _S),
        ("tf", _S),
        ("params", "VARCHAR"),
        ("last_ts", "TIMESTAMP"),
        ("entry", _D),
        ("exit", _D),
        ("stop", _D),
        ("fee_bps", _D),
        ("use", _S),
        ("prices", _S),
        ("window", _L),
        ("z_window", _L),
        ("corr_window", _L),
        ("adf_window", _L),
        ("adf_every", _L),
        ("kalman_delta", _D),
        ("kalman_obs_var", _D),
        ("kalman_p0", _D),
        ("bars", _L),
        ("trades", _L),
        ("wins", _L),
        ("open_position", _L),
        ("pnl", _D),
        ("fees", _D),
        ("notional", _D),
        ("total_return", _D),
        ("sharpe", _D),
        ("max_drawdown", _D),
        ("max_drawdown_pnl", _D),
        ("hit_rate", _D),
        ("funding", _D),
        ("run_at", "TIMESTAMP"),
    ),
    # ts = first bar of the range: re-running the same grid over the same range upserts
    ("pair", "tf", "params", "last_ts"),
)

# The pair scanner (``pairstream scan``, ``[scan]`` in the flow): ts = end of the sample.
PAIR_SCAN = Table(
    "pair_scan",
    PairScan,
    (
        ("y", _S),
        ("x", _S),
        ("tf", _S),
        ("beta", _D),
        ("alpha", _D),
        ("coint_p", _D),
        ("johansen_trace", _D),
        ("johansen_crit95", _D),
        ("half_life", _D),
        ("hurst", _D),
        ("corr", _D),
        ("n", _L),
    ),
    ("y", "x", "tf"),
)

TABLES: tuple[Table, ...] = (
    TICKS, BARS, PAIR_ANALYTICS, SIGNALS, ALERTS, FEED_HEALTH, BACKTESTS, MARKS, PAIR_SCAN
)  # fmt: skip
BY_RECORD: dict[type, Table] = {t.record: t for t in TABLES}
BY_RECORD[TickBatch] = TICKS  # the columnar form of Tick (written with Buffer.dataframe)
BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}


def table_for(rec: Any) -> Table:
    """The table a record belongs to (raises TypeError for a record no table stores)."""
    try:
        return BY_RECORD[type(rec)]
    except KeyError:
        raise TypeError(f"no QuestDB table stores {type(rec).__name__}") from None


def _check() -> None:
    """Fail at import if a table and its record disagree (a column the record lacks)."""
    for t in TABLES:
        names = {f.name for f in fields(t.record)}
        missing = [c for c, _ in t.columns if c not in names] + (
            [] if "ts" in names else ["ts"]
        )
        if missing:
            raise AssertionError(f"table {t.name}: record lacks {missing}")


_check()

__all__ = ["Table", "TABLES", "BY_NAME", "table_for", "PairBar"]
