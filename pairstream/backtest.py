"""Backtest: the live estimator and signal code run over stored bars, one parameter set at a time.

Nothing here re-implements a rule: each parameter set feeds the aligned closes through
:class:`~pairstream.estimators.PairEstimator` and :class:`~pairstream.signals.SignalMachine`
exactly as the flow does (legs aligned by :class:`~pairstream.align.PairAligner`), so a backtest
over the bars the flow saw reproduces the ``signals`` table. Sets sharing analytics settings share
one pass of the estimators (signals do not change them), and distinct analytics settings can run
in parallel processes; results keep the order of the grid.

Metrics of one run over ``n`` bars, with ``pnl_t`` the per-bar paper PnL of the signals table
(quote currency, one spread unit: 1 of y against ``b`` of x, fees and funding included):

- ``notional``: the mean gross notional ``|y| + |b|·|x|`` of the entries, i.e. the capital one
  position ties up (None without trades);
- ``funding``: the total funding cash (``Σ funding_t``, already in ``pnl``; 0 without a
  funding book);
- ``total_return = Σ pnl_t / notional`` (0 without trades);
- ``sharpe = mean(pnl_t) / std(pnl_t, ddof=1) · √(bars per year)`` over every bar of the range
  (flat bars count as 0), a year being 365 days of 24 h (crypto trades around the clock): 1m →
  √525 600; None when the PnL is constant;
- ``max_drawdown_pnl``: largest fall of ``cum_pnl`` from its running peak (the peak starts at
  0), ``max_drawdown`` the same over ``notional``;
- ``trades``: closed round trips (exits and stops); ``hit_rate``: the share of them whose net
  PnL (entry fee, marks, exit fee) is > 0; a position still open at the end is marked to market
  in the PnL but is not a trade (``open_position``).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from multiprocessing import get_context
from typing import Any, Optional

from pairstream.config import AnalyticsConfig, ConfigError, SignalsConfig, parse, tf_seconds
from pairstream.funding import FundingBook
from pairstream.records import Analytics, BacktestResult, Bar, PairBar, Signal

# numpy and the live operators (align, estimators, signals) are imported where they run:
# flows.startup imports BacktestError, and should not pull statsmodels and Bytewax into every
# command that only talks to QuestDB.

SIGNAL_KEYS = tuple(f.name for f in fields(SignalsConfig))
ANALYTICS_KEYS = tuple(f.name for f in fields(AnalyticsConfig))
PARAM_KEYS = SIGNAL_KEYS + ANALYTICS_KEYS
MAX_SETS = 10_000  # a grid beyond this is almost certainly a typo (e.g. a step of 0.001)
YEAR_S = 365 * 86_400


class BacktestError(ValueError):
    """Bad backtest arguments or inputs; ``str(err)`` is the one-line message."""


# ---------------------------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class ParamSet:
    """One point of the grid: the complete analytics and signal settings."""

    analytics: AnalyticsConfig
    signals: SignalsConfig

    def value(self, key: str) -> Any:
        return getattr(self.signals if key in SIGNAL_KEYS else self.analytics, key)

    @property
    def key(self) -> str:
        """Canonical ``entry=2;exit=0.5;stop=none;...`` over every key (the DEDUP identity)."""
        return ";".join(f"{k}={fmt_value(self.value(k))}" for k in PARAM_KEYS)


def fmt_value(v: Any) -> str:
    """``2.0`` → ``2``, ``1e-4`` → ``0.0001``, None → ``none``: short and canonical."""
    if v is None:
        return "none"
    if isinstance(v, float):
        return format(v, ".12g")
    return str(v)


def normalize_key(key: str) -> str:
    """``fee-bps`` → ``fee_bps``; an unknown key is one line listing the known ones."""
    k = key.strip().replace("-", "_")
    if k not in PARAM_KEYS:
        raise BacktestError(f"unknown parameter {key!r} (known: {', '.join(PARAM_KEYS)})")
    return k


_INT = re.compile(r"^[+-]?\d+$")


def parse_value(text: str) -> Any:
    """One value as typed: ``60`` → int, ``1.5`` → float, ``none`` → None, else the string.

    Types are checked afterwards by the configuration's own rules (:func:`pairstream.config.parse`).
    """
    t = text.strip()
    if t.lower() in ("none", "null", "off"):
        return None
    if _INT.match(t):
        return int(t)
    try:
        v = float(t)
    except ValueError:
        return t
    return v if math.isfinite(v) else t


def _range(key: str, text: str) -> list[Any]:
    parts = [parse_value(p) for p in text.split(":")]
    if len(parts) != 3 or not all(
        isinstance(p, (int, float)) and not isinstance(p, bool) for p in parts
    ):
        raise BacktestError(f"--grid {key}={text}: expected start:stop:step with numbers")
    a, b, step = parts
    if step <= 0 or b < a:
        raise BacktestError(f"--grid {key}={text}: need start ≤ stop and step > 0")
    n = int(math.floor((b - a) / step + 1e-9)) + 1
    if n > MAX_SETS:
        raise BacktestError(f"--grid {key}={text}: {n} values, more than {MAX_SETS}")
    if all(isinstance(p, int) for p in parts):
        return [a + i * step for i in range(n)]
    return [round(a + i * step, 12) for i in range(n)]


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["entry=1.5:3:0.5", "window=30,60,120"]`` → ``{"entry": [1.5, 2.0, 2.5, 3.0], ...}``.

    ``key=a:b:step`` is an inclusive range, ``key=v1,v2,...`` a list; keys are the
    ``[analytics]`` and ``[signals]`` keys (``fee-bps`` or ``fee_bps``).
    """
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, eq, text = spec.partition("=")
        if not eq or not text.strip():
            raise BacktestError(f"--grid {spec!r}: expected key=a:b:step or key=v1,v2,...")
        key = normalize_key(name)
        if key in grid:
            raise BacktestError(f"--grid: {key} is given twice")
        if ":" in text:
            values = _range(key, text)
        else:
            values = [parse_value(v) for v in text.split(",") if v.strip()]
        if not values:
            raise BacktestError(f"--grid {spec!r}: no values")
        grid[key] = list(dict.fromkeys(values))  # a repeated value would be a repeated set
    return grid


def expand(
    analytics: AnalyticsConfig,
    signals: SignalsConfig,
    overrides: Optional[Mapping[str, Any]] = None,
    grid: Optional[Mapping[str, Sequence[Any]]] = None,
) -> list[ParamSet]:
    """The cartesian product of ``grid`` over the base settings with ``overrides`` applied.

    Every set is checked by :func:`pairstream.config.parse` — the same rules as the config file —
    so a value the flow would refuse is refused here, in one line naming the grid point.
    """
    overrides = {normalize_key(k): v for k, v in (overrides or {}).items()}
    grid = {normalize_key(k): list(v) for k, v in (grid or {}).items()}
    total = math.prod(len(v) for v in grid.values())
    if total > MAX_SETS:
        raise BacktestError(f"--grid: {total} parameter sets, more than {MAX_SETS}")
    base_a, base_s = asdict(analytics), asdict(signals)
    out: list[ParamSet] = []
    for combo in itertools.product(*grid.values()):
        point = dict(zip(grid, combo))
        values = {**overrides, **point}
        a = {**base_a, **{k: v for k, v in values.items() if k in ANALYTICS_KEYS}}
        s = {**base_s, **{k: v for k, v in values.items() if k in SIGNAL_KEYS}}
        try:
            cfg = parse({"analytics": a, "signals": s})
        except ConfigError as e:
            where = ";".join(f"{k}={fmt_value(v)}" for k, v in point.items())
            raise BacktestError(f"{e}" + (f" (grid point {where})" if where else "")) from None
        out.append(ParamSet(cfg.analytics, cfg.signals))
    return out


# ---------------------------------------------------------------------------------------------
# running


def align(bars: Iterable[Bar], y: str, x: str, tf: str) -> list[PairBar]:
    """The PairBars the flow's aligner emits for these bars (either leg, any order)."""
    from pairstream.align import PairAligner

    legs = {y: 0, x: 1}
    aligner = PairAligner(y, x, tf)
    chosen = sorted(
        (b for b in bars if b.symbol in legs and b.tf == tf),
        key=lambda b: (b.ts, legs[b.symbol]),
    )
    out: list[PairBar] = []
    for b in chosen:
        out.extend(aligner.push(b))
    return out


def analytics_rows(bars: Sequence[PairBar], cfg: AnalyticsConfig) -> list[Analytics]:
    """The ``pair_analytics`` rows of these bars: the flow's estimator, fresh at the first bar."""
    from pairstream.estimators import PairEstimator

    if not bars:
        return []
    est = PairEstimator(cfg, bars[0].pair, bars[0].tf)
    return [est.update(b.ts, b.y, b.x) for b in bars]


def signal_rows(
    rows: Sequence[Analytics],
    cfg: SignalsConfig,
    prices: str = "raw",
    funding: Optional[FundingBook] = None,
) -> list[Signal]:
    """The ``signals`` rows of these analytics: the flow's state machine, flat at the start."""
    from pairstream.signals import SignalMachine

    m = SignalMachine(cfg, prices, funding)
    return [m.update(a) for a in rows]


def simulate(
    bars: Sequence[PairBar], params: ParamSet, funding: Optional[FundingBook] = None
) -> list[Signal]:
    """Per-bar signals and PnL of one parameter set (what the flow writes to ``signals``)."""
    rows = analytics_rows(bars, params.analytics)
    return signal_rows(rows, params.signals, params.analytics.prices, funding)


@dataclass(frozen=True)
class Metrics:
    bars: int
    trades: int
    wins: int
    open_position: int
    pnl: float
    fees: float
    notional: Optional[float]
    total_return: float
    sharpe: Optional[float]
    max_drawdown: Optional[float]
    max_drawdown_pnl: float
    hit_rate: Optional[float]
    funding: float = 0.0


def metrics(signals: Sequence[Signal], tf: str) -> Metrics:
    """The summary of one run (definitions in the module docstring)."""
    import numpy as np

    from pairstream.signals import ENTER_LONG, ENTER_SHORT, EXIT, STOP

    n = len(signals)
    pnl = np.array([s.pnl for s in signals], dtype=float)
    cum = np.cumsum(pnl)
    peak = np.maximum.accumulate(np.concatenate(([0.0], cum)))[1:]
    dd = float((peak - cum).max()) if n else 0.0
    entries: list[float] = []
    trade_pnls: list[float] = []
    acc = 0.0
    for s in signals:
        if s.action in (ENTER_LONG, ENTER_SHORT):
            entries.append(abs(s.y) + abs(s.hedge) * abs(s.x))
            acc = s.pnl
        elif s.action in (EXIT, STOP):
            trade_pnls.append(acc + s.pnl)
        elif s.position:
            acc += s.pnl
    total = float(cum[-1]) if n else 0.0
    notional = float(np.mean(entries)) if entries else None
    sharpe = None
    if n > 1:
        sd = float(pnl.std(ddof=1))
        if sd > 0.0:
            sharpe = float(pnl.mean()) / sd * math.sqrt(YEAR_S / tf_seconds(tf))
    wins = sum(p > 0.0 for p in trade_pnls)
    return Metrics(
        bars=n,
        trades=len(trade_pnls),
        wins=wins,
        open_position=signals[-1].position if n else 0,
        pnl=total,
        fees=float(sum(s.fees for s in signals)),
        notional=notional,
        total_return=total / notional if notional else 0.0,
        sharpe=sharpe,
        max_drawdown=dd / notional if notional else (0.0 if dd == 0.0 else None),
        max_drawdown_pnl=dd,
        hit_rate=wins / len(trade_pnls) if trade_pnls else None,
        funding=float(sum(s.funding for s in signals)),
    )


def result(
    bars: Sequence[PairBar], params: ParamSet, m: Metrics, run_at: Optional[datetime] = None
) -> BacktestResult:
    settings = {k: params.value(k) for k in PARAM_KEYS}
    return BacktestResult(
        ts=bars[0].ts,
        pair=bars[0].pair,
        tf=bars[0].tf,
        params=params.key,
        last_ts=bars[-1].ts,
        **settings,
        **asdict(m),
        run_at=run_at,
    )


def _run_group(
    bars: Sequence[PairBar],
    analytics: AnalyticsConfig,
    signal_sets: Sequence[SignalsConfig],
    funding: Optional[FundingBook] = None,
) -> list[Metrics]:
    """One estimator pass shared by every signal setting with these analytics settings."""
    rows = analytics_rows(bars, analytics)
    tf = bars[0].tf
    return [metrics(signal_rows(rows, s, analytics.prices, funding), tf) for s in signal_sets]


def backtest(
    bars: Sequence[PairBar],
    sets: Sequence[ParamSet],
    workers: int = 1,
    run_at: Optional[datetime] = None,
    funding: Optional[FundingBook] = None,
) -> list[BacktestResult]:
    """Results of every parameter set over ``bars``, in the order of ``sets``.

    ``funding``: the legs' funding events (``--funding`` files); without it no funding is paid.

    Sets are grouped by analytics settings (one estimator pass per group); with ``workers`` > 1
    groups run in that many spawned processes (spawn, not fork: the parent may hold threads).
    """
    if not bars:
        raise BacktestError("no bars to backtest")
    groups: dict[AnalyticsConfig, list[int]] = {}
    for i, p in enumerate(sets):
        groups.setdefault(p.analytics, []).append(i)
    jobs = [(a, [sets[i].signals for i in idx]) for a, idx in groups.items()]
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        outs = [_run_group(bars, a, ss, funding) for a, ss in jobs]
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_run_group, bars, a, ss, funding) for a, ss in jobs]
            outs = [f.result() for f in futures]
    by_index: dict[int, Metrics] = {}
    for idx, ms in zip(groups.values(), outs):
        by_index.update(zip(idx, ms))
    return [result(bars, sets[i], by_index[i], run_at) for i in range(len(sets))]
