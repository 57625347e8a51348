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

3. Fees: every entry, exit and stop trades both legs at the bar's closes and pays
   ``fee_bps / 1e4 · (|y_t| + |b|·|x_t|)``. ``pnl = mark-to-market − fees``; ``cum_pnl`` sums it.

Prices are the raw closes (Analytics.y/.x). Signal.beta is ``b`` while a position is open or
closed at this bar, else the bar's OLS beta; Signal.zscore is the z that drove the decision.
"""

from __future__ import annotations

from typing import Optional

from pairstream.config import AnalyticsConfig, SignalsConfig
from pairstream.records import Analytics, Signal

ENTER_LONG, ENTER_SHORT, EXIT, STOP, HOLD = "enter_long", "enter_short", "exit", "stop", "hold"


class SignalMachine:
    """Entry/exit/stop hysteresis with hedge-ratio-sized legs; picklable, O(1) state."""

    def __init__(self, cfg: SignalsConfig, analytics: Optional[AnalyticsConfig] = None) -> None:
        if cfg.use not in ("zscore", "z_kf"):
            raise ValueError(f"use must be 'zscore' or 'z_kf', got {cfg.use!r}")
        self.cfg = cfg
        # the settings of the analytics whose z drives it: a resumed flow whose settings
        # changed rebuilds the machine (flows.rebuild)
        self.analytics = analytics
        self.position = 0
        self.hedge: Optional[float] = None
        self.blocked = 0  # side of the position last stopped out (-1 short, +1 long), 0 = free
        self.cum_pnl = 0.0
        self._prev: Optional[tuple[float, float]] = None

    def update(self, a: Analytics) -> Signal:
        cfg = self.cfg
        mtm = 0.0
        if self.position and self._prev is not None:
            py, px = self._prev
            mtm = self.position * ((a.y - py) - self.hedge * (a.x - px))
        self._prev = (a.y, a.x)

        z = a.zscore if cfg.use == "zscore" else a.z_kf
        action = HOLD
        traded_hedge: Optional[float] = None
        if z is not None:
            # z seen from the position: ``d ≤ exit`` is the exit crossing, ``d ≥ stop`` adverse
            d = -z if self.position > 0 else z
            if self.position:
                if cfg.stop is not None and d >= cfg.stop:
                    action = STOP
                elif d <= cfg.exit:
                    action = EXIT
                if action != HOLD:
                    traded_hedge = self.hedge
                    self.blocked = self.position if action == STOP else 0
                    self.position, self.hedge = 0, None
            elif self.blocked:
                d = -z if self.blocked > 0 else z  # the same crossing as that side's exit
                if d <= cfg.exit:
                    self.blocked = 0
            elif a.beta is not None and (z >= cfg.entry or z <= -cfg.entry):
                action = ENTER_SHORT if z >= cfg.entry else ENTER_LONG
                self.position = -1 if action == ENTER_SHORT else 1
                self.hedge = traded_hedge = a.beta

        fees = 0.0
        if traded_hedge is not None:
            fees = cfg.fee_bps / 1e4 * (abs(a.y) + abs(traded_hedge) * abs(a.x))
        pnl = mtm - fees
        self.cum_pnl += pnl
        beta = self.hedge if self.position else traded_hedge
        if beta is None:
            beta = a.beta
        return Signal(
            pair=a.pair,
            tf=a.tf,
            ts=a.ts,
            zscore=z,
            position=self.position,
            action=action,
            beta=beta,
            y=a.y,
            x=a.x,
            pnl=pnl,
            fees=fees,
            cum_pnl=self.cum_pnl,
        )
