"""Where a live start begins: the store first (``ticks``, ``bars``), then the exchange, then live.

:func:`plan_start` decides, per symbol, before the flow emits anything:

* ``resume_id`` — the newest stored trade id: the source backfills over REST after it (no
  stored trades, or a gap older than ``max_gap``: the first trade at ``cut``, from REST);
* ``cut`` — where bars are built from trades again. After a previous run it is the end of the
  newest stored bar of the longest timeframe, so every still-open bar of every timeframe is
  rebuilt from ``ticks`` (the stored ticks from ``cut`` on, then the backfill): none is ever
  written again with fewer trades. A cold start cuts at the last minute boundary that leaves
  the 1s windows full of trades from REST;
* ``history`` — complete bars of the first timeframe above 1s (1m) before ``cut``, enough to
  fill every configured window of that and the longer timeframes: stored bars first, the
  exchange's klines for what the store lacks (or has with fewer trades).

The bars step replays ``history`` and ``ticks`` in front of the live trades, so the first live
bar is warm. Rows of ``pair_analytics``, ``signals`` and ``alerts`` the store already holds
(``written``) are not written again: the replay only rebuilds their state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from connectors.binance_history import BinanceHistory, HistoryError
from connectors.questdb_http import QuestDBHttp
from pairstream.align import PairAligner
from pairstream.config import AnalyticsConfig, Config, tf_seconds
from pairstream.records import EPOCH, Bar, Health, PairBar, Tick

log = logging.getLogger("pairstream.start")

KLINE_INTERVALS = frozenset(
    "1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w".split()
)  # fmt: skip


@dataclass(frozen=True)
class SymbolStart:
    """The start of one symbol (see the module docstring)."""

    symbol: str
    resume_id: Optional[int] = None
    cut: Optional[datetime] = None
    last_close: Optional[float] = None
    history: tuple[Bar, ...] = ()
    ticks: tuple[Tick, ...] = ()
    unfilled_s: float = 0.0  # length of a gap too old to backfill (0: none)


@dataclass(frozen=True)
class StartPlan:
    symbols: dict[str, SymbolStart]
    written: dict[tuple[str, str], datetime] = field(default_factory=dict)
    now: Optional[datetime] = None


def bars_needed(a: AnalyticsConfig) -> int:
    """Bars before which some estimator column is still NULL (the warm-up length)."""
    return max(a.window + a.z_window - 1, a.window + a.adf_window - 1, a.corr_window + 1)


def _ts(v: Any) -> Optional[datetime]:
    if v is None:
        return None
    t = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _lit(t: datetime) -> str:
    return f"'{t.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'"


def _floor(t: datetime, secs: int) -> datetime:
    s = (t - EPOCH) // timedelta(seconds=1)
    return EPOCH + timedelta(seconds=s - s % secs)


def _bar(row: dict[str, Any]) -> Bar:
    return Bar(
        row["symbol"], row["tf"], _ts(row["ts"]), row["open"], row["high"], row["low"],
        row["close"], row["volume"], row["quote_volume"], int(row["trades"]),
        row["taker_buy_volume"], row["vwap"], bool(row["filled"]),
    )  # fmt: skip


def _tick(row: dict[str, Any]) -> Tick:
    return Tick(
        row["symbol"], _ts(row["ts"]), row["price"], row["qty"], int(row["trade_id"]),
        int(row["first_id"]), int(row["last_id"]), bool(row["buyer_maker"]),
    )  # fmt: skip


class Planner:
    """Builds the :class:`StartPlan` of one configuration (queries QuestDB and the exchange)."""

    def __init__(
        self, cfg: Config, http: QuestDBHttp, history: BinanceHistory, *, max_gap: timedelta
    ) -> None:
        self.cfg = cfg
        self.http = http
        self.ex = history
        self.max_gap = max_gap
        tfs = cfg.timeframes
        self.max_tf = tf_seconds(tfs[-1])
        above = [tf for tf in tfs if tf_seconds(tf) > 1]
        self.base = above[0] if above else None  # the timeframe history bars are fed at
        self.base_s = tf_seconds(self.base) if self.base else 1
        need = [self.needed(tf) * tf_seconds(tf) for tf in above]
        self.need_history = timedelta(seconds=max(need, default=0))
        one = [tf for tf in tfs if tf_seconds(tf) == 1]
        self.need_1s = timedelta(seconds=self.needed(one[0]) if one else 0)

    def needed(self, tf: str) -> int:
        """Warm-up bars of ``tf``: the longest of every preset's."""
        return max(bars_needed(self.cfg.analytics_for(tf, p)) for p in self.cfg.preset_names)

    def plan(self) -> StartPlan:
        self.http.wait_applied(["ticks", "bars"], timeout=60.0)
        try:
            now = self.ex.server_time()
        except HistoryError as e:
            now = datetime.now(timezone.utc)
            log.warning("start: exchange time unknown (%s): using the local clock", e)
        starts = {s: self.symbol(s, now) for s in self.cfg.symbols}
        written = {}
        for r in self.http.query("SELECT pair, tf, max(ts) ts FROM pair_analytics"):
            written[(r["pair"], r["tf"])] = _ts(r["ts"])
        return StartPlan(starts, written, now)

    # -- one symbol ---------------------------------------------------------------------------

    def symbol(self, s: str, now: datetime) -> SymbolStart:
        q = self.http.query
        last = q(f"SELECT trade_id, ts FROM ticks WHERE symbol = '{s}' ORDER BY trade_id DESC "
                 "LIMIT 1")  # fmt: skip
        if last and now - _ts(last[0]["ts"]) <= self.max_gap:
            return self._resume(s, int(last[0]["trade_id"]), _ts(last[0]["ts"]))
        unfilled = 0.0
        if last:
            unfilled = (now - _ts(last[0]["ts"])).total_seconds()
            log.warning(
                "start: %s: the newest stored trade is %.0fs old, beyond source.max_gap (%s): "
                "not backfilled, starting cold", s, unfilled, self.cfg.source.max_gap,
            )
        return self._cold(s, now, unfilled)

    def _resume(self, s: str, last_id: int, last_ts: datetime) -> SymbolStart:
        q = self.http.query
        longest = self.cfg.timeframes[-1]
        top = q(f"SELECT max(ts) ts FROM bars WHERE symbol = '{s}' AND tf = '{longest}'")
        top_ts = _ts(top[0]["ts"]) if top else None
        if top_ts is not None:
            cut = top_ts + timedelta(seconds=self.max_tf)
        else:  # no bar of the longest timeframe yet: rebuild from the first stored trade
            first = q(f"SELECT min(ts) ts FROM ticks WHERE symbol = '{s}'")
            cut = _floor(_ts(first[0]["ts"]), 1)
        ticks = tuple(
            _tick(r)
            for r in q(
                f"SELECT * FROM ticks WHERE symbol = '{s}' AND ts >= {_lit(cut)} "
                f"AND trade_id <= {last_id} ORDER BY trade_id"
            )
        )
        history = self._history(s, cut)
        close = history[-1].close if history else None
        if close is None:
            prev = q(
                f"SELECT close FROM bars WHERE symbol = '{s}' AND ts < {_lit(cut)} "
                f"ORDER BY ts DESC LIMIT 1"
            )
            close = prev[0]["close"] if prev else None
        log.info(
            "start: %s resumes after stored trade %d (%s): %d stored trades rebuild the bars "
            "from %s, %d history bars", s, last_id, last_ts.isoformat(), len(ticks),
            cut.isoformat(), len(history),
        )  # fmt: skip
        return SymbolStart(s, last_id, cut, close, history, ticks)

    def _cold(self, s: str, now: datetime, unfilled: float) -> SymbolStart:
        if not self.cfg.source.warmup:
            return SymbolStart(s, unfilled_s=unfilled)
        cut = _floor(now - self.need_1s, self.base_s)
        first = self.ex.first_trade_at(s, cut)
        resume_id = None
        if first is not None:
            key = "a" if self.cfg.source.stream == "aggTrade" else "f"
            resume_id = int(first[key]) - 1
        history = self._history(s, cut)
        log.info(
            "start: %s cold start: %d history bars, trades from %s%s", s, len(history),
            cut.isoformat(), "" if first else " (none yet: live edge)",
        )
        close = history[-1].close if history else None
        return SymbolStart(s, resume_id, cut, close, history, (), unfilled)

    def _history(self, s: str, cut: datetime) -> tuple[Bar, ...]:
        """Base-timeframe bars in [start, cut): stored, else klines (the one with more trades)."""
        if self.base is None or not self.need_history:
            return ()
        start = _floor(cut - self.need_history, self.max_tf)
        stored = {
            b.ts: b
            for b in map(_bar, self.http.query(
                f"SELECT * FROM bars WHERE symbol = '{s}' AND tf = '{self.base}' "
                f"AND ts >= {_lit(start)} AND ts < {_lit(cut)} ORDER BY ts"
            ))
        }  # fmt: skip
        step = timedelta(seconds=self.base_s)
        expected = (cut - start) // step
        if self.cfg.source.warmup and self.base in KLINE_INTERVALS and len(stored) < expected:
            missing = [start + i * step for i in range(expected) if start + i * step not in stored]
            try:
                got = self.ex.klines(s, self.base, missing[0], missing[-1] + step)
            except HistoryError as e:
                log.warning("start: %s: no klines from the exchange (%s): warming up from "
                            "the store only", s, e)
                got = []
            for k in got:
                have = stored.get(k.ts)
                if have is None or have.trades < k.trades:
                    stored[k.ts] = k
        return tuple(stored[t] for t in sorted(stored))


class Starter:
    """The plan of one flow, computed once on first use (by whichever step asks first)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._plan: Optional[StartPlan] = None

    def get(self) -> StartPlan:
        with self._lock:
            if self._plan is None:
                src = self.cfg.source
                planner = Planner(
                    self.cfg,
                    QuestDBHttp.from_conf(self.cfg.questdb.conf),
                    BinanceHistory(src.rest_url),
                    max_gap=src.max_gap_td,
                )
                self._plan = planner.plan()
            return self._plan

    def symbol(self, s: str) -> Optional[SymbolStart]:
        return self.get().symbols.get(s)

    def resume_ids(self, symbols: list[str]) -> dict[str, int]:
        """Where the source starts each symbol: after this trade id (absent: the live edge)."""
        plan = self.get()
        return {s: st.resume_id for s in symbols
                if (st := plan.symbols.get(s)) is not None and st.resume_id is not None}

    def health(self, symbols: list[str]) -> list[Health]:
        """``gap_unfilled_s`` rows for gaps too old to backfill (once, at start)."""
        plan = self.get()
        at = (plan.now or datetime.now(timezone.utc)).replace(microsecond=0)
        return [Health(s, "gap_unfilled_s", at, plan.symbols[s].unfilled_s)
                for s in symbols if s in plan.symbols and plan.symbols[s].unfilled_s]

    def unwritten(self, row: Any) -> bool:
        """False for a pair row (analytics, signal, alert) the store holds from a previous run.

        The replayed history only rebuilds the estimator, signal and alert state; the rows a
        previous run wrote for those bars stay as they are. Never loads the plan: a recovered
        flow (no plan) replays nothing.
        """
        plan = self._plan
        if plan is None:
            return True
        until = plan.written.get((row.pair, row.tf))
        return until is None or row.ts > until


def stored_pair_bars(
    http: QuestDBHttp, y: str, x: str, tf: str, before: datetime, limit: int
) -> list[PairBar]:
    """The last ``limit`` aligned closes of ``y``/``x`` before ``before``, from ``bars``.

    Aligned by the live rule (:class:`~pairstream.align.PairAligner`), so a replay of them feeds
    the estimators exactly what the live flow fed them.
    """
    rows = http.query(
        f"SELECT symbol, ts, close FROM bars WHERE tf = '{tf}' AND symbol IN ('{y}', '{x}') "
        f"AND ts < {_lit(before)} ORDER BY ts DESC LIMIT {2 * limit}"
    )
    aligner = PairAligner(y, x, tf)
    out: list[PairBar] = []
    for r in reversed(rows):
        b = Bar(r["symbol"], tf, _ts(r["ts"]), *(r["close"],) * 4, 0.0, 0.0, 0, 0.0, 0.0, False)
        out.extend(aligner.push(b))
    return out[-limit:]


def stored_history(conf: str) -> Callable[[str, str, str, datetime, int], list[PairBar]]:
    """:func:`stored_pair_bars` of the QuestDB at ``conf`` (connected on first use)."""

    def history(y: str, x: str, tf: str, before: datetime, limit: int) -> list[PairBar]:
        return stored_pair_bars(QuestDBHttp.from_conf(conf), y, x, tf, before, limit)

    return history


__all__ = [
    "Planner", "StartPlan", "Starter", "SymbolStart", "bars_needed", "stored_history",
    "stored_pair_bars",
]
