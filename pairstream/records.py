"""Typed records passed between the stages of the dataflow.

Every record is a frozen, slotted dataclass: cheap to create on the per-tick path, safe to
share between operators, and mapped one to one onto a QuestDB table by
:mod:`connectors.schema`. Timestamps are aware UTC datetimes (bar rows: the bar start).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import MISSING, dataclass, fields
from datetime import datetime, timedelta, timezone
from types import MemberDescriptorType
from typing import Any, Optional, TypeVar

import numpy as np

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # the one epoch: trade times are offsets
_US = timedelta(microseconds=1)
_R = TypeVar("_R")


def record(cls: Optional[type[_R]] = None, *, eq: bool = True) -> Any:
    """``@dataclass(frozen=True, slots=True)`` with an ``__init__`` that sets the slots directly.

    A frozen dataclass's generated ``__init__`` goes through ``object.__setattr__`` once per
    field, which made building a 16-field record ~3x the cost of a mutable one; the flow builds
    a handful of records per bar (bars, pair bars, analytics, signals). This ``__init__`` takes
    the same arguments (names, order, defaults) and calls each slot's descriptor instead: the
    record is the same frozen dataclass, equal, hashing and pickling as before.
    """

    def wrap(c: type[_R]) -> type[_R]:
        c = dataclass(frozen=True, slots=True, eq=eq)(c)
        c.__init__ = _slot_init(c)  # type: ignore[misc]
        return c

    return wrap if cls is None else wrap(cls)


def _slot_init(cls: type) -> Callable[..., None]:
    fs = fields(cls)
    if any(not f.init or f.default_factory is not MISSING for f in fs) or hasattr(
        cls, "__post_init__"
    ):  # pragma: no cover - no record needs these; keep the dataclass __init__ then
        return cls.__init__
    env: dict[str, Any] = {}
    params, body = [], []
    for f in fs:
        slot = cls.__dict__[f.name]
        assert isinstance(slot, MemberDescriptorType)
        env[f"_set_{f.name}"] = slot.__set__
        if f.default is MISSING:
            params.append(f.name)
        else:
            env[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})\n")
    # the same text dataclasses generates, from field names only (identifiers of this module)
    exec(f"def __init__(self, {', '.join(params)}):\n{''.join(body)}", env)  # noqa: S102
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    return init


@record
class Tick:
    """One exchange trade (an aggTrade or a raw trade). ``ts`` is the exchange trade time ``T``.

    ``trade_id`` is the aggTrade id ``a`` (raw trades: ``t``); ``first_id``..``last_id`` is the
    range of raw trades it aggregates (equal to ``trade_id`` for a raw trade).
    """

    symbol: str
    ts: datetime
    price: float
    qty: float
    trade_id: int
    first_id: int
    last_id: int
    buyer_maker: bool


@record(eq=False)
class TickBatch:
    """Consecutive ticks of one symbol as columns, in arrival order: the bulk form of Tick.

    A replay at full speed moves millions of ticks; one Python object per tick would cost more
    than everything else the flow does with it, so sources may hand over their ticks as
    columns (numpy arrays of equal length) and the bars and QuestDB stages consume them whole.
    ``ts_us`` is the trade time in epoch microseconds. ``ticks()`` gives the Tick records.
    """

    symbol: str
    ts_us: np.ndarray  # int64
    price: np.ndarray  # float64
    qty: np.ndarray  # float64
    trade_id: np.ndarray  # int64
    first_id: np.ndarray  # int64
    last_id: np.ndarray  # int64
    buyer_maker: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.ts_us)

    def ticks(self) -> Iterator[Tick]:
        """The batch as Tick records, in order."""
        s = self.symbol
        for us, p, q, a, f, l_, m in zip(
            self.ts_us.tolist(),
            self.price.tolist(),
            self.qty.tolist(),
            self.trade_id.tolist(),
            self.first_id.tolist(),
            self.last_id.tolist(),
            self.buyer_maker.tolist(),
        ):
            yield Tick(s, EPOCH + us * _US, p, q, a, f, l_, m)

    @classmethod
    def from_ticks(cls, ticks: Sequence[Tick]) -> TickBatch:
        """Ticks of one symbol → a batch (the symbol is the first tick's)."""
        return cls(
            ticks[0].symbol,
            np.array([(t.ts - EPOCH) // _US for t in ticks], dtype=np.int64),
            np.array([t.price for t in ticks], dtype=np.float64),
            np.array([t.qty for t in ticks], dtype=np.float64),
            np.array([t.trade_id for t in ticks], dtype=np.int64),
            np.array([t.first_id for t in ticks], dtype=np.int64),
            np.array([t.last_id for t in ticks], dtype=np.int64),
            np.array([t.buyer_maker for t in ticks], dtype=bool),
        )


def expand_ticks(records: Sequence[object]) -> list[object]:
    """Records with every TickBatch replaced by its Ticks (tests, slow consumers)."""
    out: list[object] = []
    for r in records:
        if type(r) is TickBatch:
            out.extend(r.ticks())
        else:
            out.append(r)
    return out


@record
class Progress:
    """A source's promise: no more ticks of ``symbol`` with event time before ``ts`` will come.

    Sources emit it on their own progress (caught-up live feed, end of a replay file), so bar
    windows close on data progress rather than wall time: a resumed flow loses no bar.
    """

    symbol: str
    ts: datetime


@record
class Bar:
    """OHLCV over ``[ts, ts + tf)``; ``filled`` marks an interval with no trade."""

    symbol: str
    tf: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trades: int
    taker_buy_volume: float
    vwap: float
    filled: bool


@record
class PairBar:
    """Closes of both legs of ``pair`` (``"Y/X"``) for one interval."""

    pair: str
    tf: str
    ts: datetime
    y: float
    x: float


@record
class Analytics:
    """Rolling pair statistics after bar ``ts``; estimator columns are None while warming up."""

    pair: str
    tf: str
    ts: datetime
    y: float
    x: float
    beta: Optional[float]
    alpha: Optional[float]
    spread: Optional[float]
    zscore: Optional[float]
    corr: Optional[float]
    adf_p: Optional[float]
    beta_kf: Optional[float]
    alpha_kf: Optional[float]
    z_kf: Optional[float]
    half_life: Optional[float]
    warm: bool
    preset: str = "default"  # the [analytics.presets] window set ("default": [analytics])


@record
class Signal:
    """State of the paper-trading state machine after bar ``ts``.

    ``position``: +1 long the spread (long y, short beta·x), -1 short, 0 flat. ``action`` is what
    happened at this bar (``enter_long``, ``enter_short``, ``exit``, ``stop``, ``hold``).
    ``beta`` is the estimate the hedge was sized from (OLS ``beta``, or ``beta_kf`` with
    ``use = "z_kf"``); ``hedge`` the units of x held per unit of y, fixed at entry (``beta``
    with raw prices, ``beta·y/x`` with log prices), None when flat. ``funding`` is the funding
    cash booked on this bar, ``pnl`` this bar's PnL net of fees and including funding,
    ``cum_pnl``/``cum_funding`` the running totals (quote currency, one unit of y per position).
    """

    pair: str
    tf: str
    ts: datetime
    zscore: Optional[float]
    position: int
    action: str
    beta: Optional[float]
    y: float
    x: float
    pnl: float
    fees: float
    cum_pnl: float
    hedge: Optional[float] = None
    funding: float = 0.0
    cum_funding: float = 0.0
    preset: str = "default"


@record
class Mark:
    """One ``markPriceUpdate`` (``<symbol>@markPrice@1s``): ``ts`` is the event time ``E``."""

    symbol: str
    ts: datetime
    mark: float
    index: float
    funding_rate: float
    next_funding_ts: Optional[datetime]


@record
class Funding:
    """A funding settlement of ``symbol`` at ``ts``: each position pays ``qty·mark·rate``.

    ``mark`` is None when the source does not carry it (data.binance.vision's ``fundingRate``
    CSV); the signal machine then uses the leg's close of the last bar ending at or before ``ts``.
    """

    symbol: str
    ts: datetime
    rate: float
    mark: Optional[float]


@record
class AlertEvent:
    """An edge of a user alert rule: ``state`` is ``FIRING`` or ``RESOLVED``."""

    rule_id: str
    pair: str
    tf: str
    ts: datetime
    state: str
    severity: str
    expr: str
    value: Optional[float]
    message: str


@record
class Health:
    """One pipeline-health measurement (long format: one metric per row).

    Metrics: ``ticks``, ``reconnects``, ``gaps``, ``backfilled``, ``malformed``, ``late_ticks``,
    ``lag_ms``. Counts are per reporting interval, not cumulative, so Grafana can sum them.
    """

    symbol: str
    metric: str
    ts: datetime
    value: float


@record
class BacktestResult:
    """One row of the ``backtests`` table: a parameter set over a range of one pair+timeframe.

    ``ts`` is the first bar of the range, ``last_ts`` the last; with ``pair``, ``tf`` and the
    canonical ``params`` they identify the run, so re-running a grid upserts its rows.
    """

    ts: datetime
    pair: str
    tf: str
    params: str
    last_ts: datetime
    entry: float
    exit: float
    stop: Optional[float]
    fee_bps: float
    use: str
    prices: str
    window: int
    z_window: int
    corr_window: int
    adf_window: int
    adf_every: int
    kalman_delta: float
    kalman_obs_var: float
    kalman_p0: float
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
    run_at: Optional[datetime] = None


@record
class PairScan:
    """One row of the ``pair_scan`` table: the scanner's statistics of one ordered pair.

    ``ts`` is the end of the sample (the last bar's start + ``tf``); with ``y``, ``x`` and ``tf``
    it identifies the row, so re-scanning the same sample upserts it. Definitions:
    :mod:`pairstream.scan`.
    """

    ts: datetime
    y: str
    x: str
    tf: str
    beta: Optional[float]
    alpha: Optional[float]
    coint_p: Optional[float]
    johansen_trace: Optional[float]
    johansen_crit95: float
    half_life: Optional[float]
    hurst: Optional[float]
    corr: Optional[float]
    n: int
