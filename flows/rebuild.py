"""Changed settings on a recovery resume: rebuild estimator and signal state from stored bars.

A Bytewax snapshot holds the :class:`PairEstimator` and :class:`SignalMachine` objects with the
settings they were built with. When ``[analytics]`` (for that timeframe) or ``[signals]`` differ
from the current configuration, the state is rebuilt by replaying the stored bars before the
first bar of the resumed run through fresh objects with the new settings, and one log line says
so. The replay's rows are not emitted (the store holds the rows of those bars).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any, Optional

from connectors.store_resume import bars_needed
from pairstream.config import DEFAULT_PRESET, AnalyticsConfig, Config, SignalsConfig
from pairstream.estimators import PairEstimator
from pairstream.funding import FundingBook
from pairstream.records import Analytics, PairBar
from pairstream.signals import SignalMachine

log = logging.getLogger("pairstream.start")

REPLAY_MIN = 2000  # bars replayed at least; more for long windows (20 warm-ups)
History = Callable[[str, str, str, datetime, int], list[PairBar]]  # (y, x, tf, before, limit)


def changes(old: Any, new: Any, section: str) -> list[str]:
    """``section.key old→new`` for every setting that differs (both dataclasses, or None)."""
    if old is None or new is None:
        return []
    a, b = asdict(old), asdict(new)
    return [f"{section}.{k} {a.get(k)!r}→{b[k]!r}" for k in b if a.get(k) != b[k]]


def replay_length(cfg: AnalyticsConfig) -> int:
    return max(REPLAY_MIN, 20 * bars_needed(cfg))


def _replay(
    history: History, pair: str, tf: str, preset: str, before: datetime, a_cfg: AnalyticsConfig
) -> tuple[PairEstimator, list]:
    y, x = pair.split("/", 1)
    bars = history(y, x, tf, before, replay_length(a_cfg))
    est = PairEstimator(a_cfg, pair, tf, preset)
    return est, [est.update(b.ts, b.y, b.x) for b in bars]


def _key(pair: str, tf: str, preset: str) -> str:
    return f"{pair} {tf}" + ("" if preset == DEFAULT_PRESET else f" preset {preset}")


def rebuilt_estimator(
    old: PairEstimator, cfg: AnalyticsConfig, history: History, pb: PairBar, preset: str
) -> PairEstimator:
    """A fresh estimator with ``cfg``, fed the stored bars before ``pb``."""
    est, rows = _replay(history, pb.pair, pb.tf, preset, pb.ts, cfg)
    log.info("start: %s settings changed since the snapshot (%s): estimators rebuilt from "
             "%d stored bars", _key(pb.pair, pb.tf, preset),
             ", ".join(changes(old.cfg, cfg, "analytics")), len(rows))
    return est


def machine_outdated(m: SignalMachine, s_cfg: SignalsConfig, a_cfg: AnalyticsConfig) -> bool:
    """True when a restored machine was built with other signal or analytics settings."""
    fed = getattr(m, "analytics", None)
    return m.cfg != s_cfg or (fed is not None and fed != a_cfg)


def rebuilt_machine(
    old: SignalMachine,
    cfg: Config,
    a_cfg: AnalyticsConfig,
    history: History,
    a: Analytics,
    funding: Optional[FundingBook] = None,
) -> SignalMachine:
    """A fresh machine with the new settings, fed the analytics of the stored bars before ``a``.

    Funding events streamed in before the restart are not replayed (the machine keeps the
    known ``funding`` book only).
    """
    _, rows = _replay(history, a.pair, a.tf, a.preset, a.ts, a_cfg)
    m = SignalMachine(cfg.signals, a_cfg.prices, funding, a_cfg)
    for r in rows:
        m.update(r)
    what = changes(old.cfg, cfg.signals, "signals") + changes(
        getattr(old, "analytics", None), a_cfg, "analytics")
    log.info("start: %s settings changed since the snapshot (%s): signal state rebuilt "
             "from %d stored bars", _key(a.pair, a.tf, a.preset), ", ".join(what), len(rows))
    return m
