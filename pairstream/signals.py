"""Signal state machine and paper PnL for one pair and timeframe (operator: :mod:`flows.signals`).

Rules, applied to each Analytics row in order, with ``z`` the column chosen by
``SignalsConfig.use`` (``zscore`` or ``z_kf``):

1. Mark to market: the position held over the previous bar earns
   ``pos·((y_t − y_{t−1}) − b·(x_t − x_{t−1}))`` where ``b`` is the hedge ratio fixed at entry
   (long the spread = long 1 unit of y, short ``b`` units of x; short the spread is the reverse).
2. Decide on ``z_t`` (nothing happens while ``z_t`` is None):

   - in a position: ``stop`` if a stop is configured and z moved against it to ``stop``
     (short: ``z ≥ stop``; long: ``z ≤ −stop``); else ``exit`` once z *crosses* the exit level
     (short: ``z ≤ exit``; long: ``z ≥ −exit``); else ``hold``. The exit is a crossing, not a
     band: a z jumping from ≥ entry to ≤ −entry in one bar closes the short (it does not keep
     it open), and ``exit = 0`` closes at the zero crossing. The stop is one-sided: a z
     beyond ``−stop`` for a short is a (favourable) exit, not a stop. After a stop the machine
     is *blocked*: it stays flat until z crosses the exit level on the stopped side (a stopped
     short: ``z ≤ exit``; a stopped long: ``z ≥ −exit``), so ``exit = 0`` releases at the zero
     crossing instead of never.
   - a bar that exits, stops or unblocks never enters (no re-entry on the same bar).
   - flat and not blocked: ``enter_short`` if ``z ≥ entry``, ``enter_long`` if ``z ≤ −entry``,
     provided the OLS ``beta`` of the bar exists; it becomes the position's hedge ratio ``b``.

3. Hedge: entering fixes ``b``, the units of x held per unit of y. It is sized from the
   estimate that drives the decision — the OLS ``beta`` (``use = "zscore"``) or ``beta_kf``
   (``use = "z_kf"``) of the bar — and with ``prices = "log"`` that estimate is an elasticity,
   so ``b = beta·y_t/x_t`` (equal notional exposure per unit of log move: a notional hedge);
   with raw prices ``b = beta``.
4. Fees: every entry, exit and stop trades both legs at the bar's closes and pays
   ``fee_bps / 1e4 · (|y_t| + |b|·|x_t|)``.
5. Funding: a funding event of a leg at time ``T`` is booked on the first bar ending after
   ``T`` and charged to the position after the last bar ending at or before ``T`` (the
   position held going into that bar): per leg ``cash = −qty · mark(T) · rate(T)`` with
   ``qty = pos`` for y and ``−pos·b`` for x (longs pay a positive rate, shorts receive). The
   mark is the event's, else the leg's close of that last bar. An event that arrives after its
   bar was processed (the live stream racing the bars) is booked on the next bar, still with
   the position at ``T`` (the last 64 bars are remembered for this).

``pnl = mark-to-market − fees + funding``; ``cum_pnl`` and ``cum_funding`` sum them.

Prices are the raw closes (Analytics.y/.x). Signal.beta is the sizing estimate of the open
position (or the one closed at this bar), else the bar's OLS beta; Signal.hedge is ``b`` (None
when flat); Signal.zscore is the z that drove the decision.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import Optional

from pairstream.config import AnalyticsConfig, SignalsConfig, tf_seconds
from pairstream.funding import FundingBook
from pairstream.records import Analytics, Funding, Signal

ENTER_LONG, ENTER_SHORT, EXIT, STOP, HOLD = "enter_long", "enter_short", "exit", "stop", "hold"
_HISTORY = 64  # bars remembered for funding events that arrive late


class SignalMachine:
    """Entry/exit/stop hysteresis with hedge-sized legs, fees and funding; picklable.

    ``prices`` is the analytics setting the rows were computed with (``"raw"``/``"log"``);
    ``funding`` a book of known funding events (shared, never modified: events streamed in
    with :meth:`add_funding` go to the machine's own book).
    """

    def __init__(
        self,
        cfg: SignalsConfig,
        prices: str = "raw",
        funding: Optional[FundingBook] = None,
        analytics: Optional[AnalyticsConfig] = None,
    ) -> None:
        if cfg.use not in ("zscore", "z_kf"):
            raise ValueError(f"use must be 'zscore' or 'z_kf', got {cfg.use!r}")
        if prices not in ("raw", "log"):
            raise ValueError(f"prices must be 'raw' or 'log', got {prices!r}")
        self.cfg = cfg
        # the settings of the analytics whose z drives it: a resumed flow whose settings
        # changed rebuilds the machine (flows.rebuild)
        self.analytics = analytics
        self.prices = prices
        self.position = 0
        self.hedge: Optional[float] = None
        self.sized_by: Optional[float] = None  # the beta the hedge was sized from
        self.blocked = 0  # side of the position last stopped out (-1 short, +1 long), 0 = free
        self.cum_pnl = 0.0
        self.cum_funding = 0.0
        self._prev: Optional[tuple[float, float]] = None
        self._prev_end: Optional[datetime] = None
        self._book = funding
        self._own_book = False
        self._legs: Optional[tuple[str, str]] = None
        self._bar: Optional[timedelta] = None
        # (bar end, position, hedge, y, x) after each recent bar, for late funding events
        self._history: deque[tuple[datetime, int, Optional[float], float, float]] = deque(
            maxlen=_HISTORY
        )
        self._late = 0.0  # funding of late events, booked on the next bar
        self.dropped_funding = 0  # late events older than the remembered bars

    def add_funding(self, e: Funding) -> None:
        """A funding event from a stream: booked on its bar, or on the next if it is late."""
        if self._prev_end is not None and e.ts < self._prev_end:
            self._late += self._late_cash(e)
            return
        if not self._own_book:
            self._book = FundingBook(
                [] if self._book is None else
                [ev for s in self._book.symbols for ev in self._book.events(s)]
            )  # fmt: skip
            self._own_book = True
        self._book.add(e)

    def _late_cash(self, e: Funding) -> float:
        if self._legs is None:
            return 0.0
        for end, pos, hedge, y, x in reversed(self._history):
            if end <= e.ts:
                return self._cash(e, pos, hedge, y, x)
        if len(self._history) == self._history.maxlen:
            self.dropped_funding += 1  # older than every remembered bar
        return 0.0  # before the first bar: flat

    def _cash(self, e: Funding, pos: int, hedge: Optional[float], y: float, x: float) -> float:
        """Funding cash of one event for the position ``pos`` (1 y against ``hedge`` x)."""
        if not pos or self._legs is None:
            return 0.0
        if e.symbol == self._legs[0]:
            qty, close = float(pos), y
        elif e.symbol == self._legs[1]:
            qty, close = -pos * hedge, x
        else:
            return 0.0
        mark = close if e.mark is None else e.mark
        return -qty * mark * e.rate

    def _funding(self, end: datetime) -> float:
        """Funding of the events in [previous bar end, this bar end), on the position held."""
        cash, self._late = self._late, 0.0
        if self._book is None or self._prev_end is None or not self.position:
            return cash
        py, px = self._prev
        for sym in self._legs:
            for e in self._book.between(sym, self._prev_end, end):
                cash += self._cash(e, self.position, self.hedge, py, px)
        return cash

    def update(self, a: Analytics) -> Signal:
        cfg = self.cfg
        if self._legs is None:
            y_sym, _, x_sym = a.pair.partition("/")
            self._legs = (y_sym, x_sym)
            self._bar = timedelta(seconds=tf_seconds(a.tf))
        end = a.ts + self._bar
        y, x = a.y, a.x
        position = self.position
        mtm = 0.0
        prev = self._prev
        if position and prev is not None:
            py, px = prev
            mtm = position * ((y - py) - self.hedge * (x - px))
        # :meth:`_funding`, its no-event case inline (most bars)
        if self._book is None or self._prev_end is None or not position:
            funding, self._late = self._late, 0.0
        else:
            funding = self._funding(end)
        self._prev = (y, x)
        self._prev_end = end

        if cfg.use == "zscore":
            z, est = a.zscore, a.beta
        else:
            z, est = a.z_kf, a.beta_kf
        action = HOLD
        traded_hedge: Optional[float] = None
        traded_beta: Optional[float] = None
        if z is not None:
            # z seen from the position: ``d ≤ exit`` is the exit crossing, ``d ≥ stop`` adverse
            d = -z if position > 0 else z
            if position:
                if cfg.stop is not None and d >= cfg.stop:
                    action = STOP
                elif d <= cfg.exit:
                    action = EXIT
                if action != HOLD:
                    traded_hedge, traded_beta = self.hedge, self.sized_by
                    self.blocked = position if action == STOP else 0
                    self.position, self.hedge, self.sized_by = 0, None, None
                    position = 0
            elif self.blocked:
                d = -z if self.blocked > 0 else z  # the same crossing as that side's exit
                if d <= cfg.exit:
                    self.blocked = 0
            elif est is not None and (z >= cfg.entry or z <= -cfg.entry):
                action = ENTER_SHORT if z >= cfg.entry else ENTER_LONG
                self.position = position = -1 if action == ENTER_SHORT else 1
                self.sized_by = traded_beta = est
                self.hedge = traded_hedge = est * y / x if self.prices == "log" else est

        fees = 0.0
        if traded_hedge is not None:
            fees = cfg.fee_bps / 1e4 * (abs(y) + abs(traded_hedge) * abs(x))
        pnl = mtm - fees + funding
        self.cum_pnl += pnl
        self.cum_funding += funding
        self._history.append((end, position, self.hedge, y, x))
        if position:
            hedge, beta = self.hedge, self.sized_by
        else:
            hedge, beta = traded_hedge, traded_beta
        if beta is None:
            beta = a.beta
        return Signal(a.pair, a.tf, a.ts, z, position, action, beta, y, x, pnl, fees,
                      self.cum_pnl, hedge, funding, self.cum_funding, a.preset)
