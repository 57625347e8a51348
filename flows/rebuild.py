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
from typing import Any

from connectors.store_resume import bars_needed
from pairstream.config import AnalyticsConfig, SignalsConfig
from pairstream.estimators import PairEstimator
from pairstream.records import PairBar
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
    history: History, pair: str, tf: str, before: datetime, a_cfg: AnalyticsConfig
) -> tuple[PairEstimator, list]:
    y, x = pair.split("/", 1)
    bars = history(y, x, tf, before, replay_length(a_cfg))
    est = PairEstimator(a_cfg, pair, tf)
    return est, [est.update(b.ts, b.y, b.x) for b in bars]


def rebuilt_estimator(
    old: PairEstimator, cfg: AnalyticsConfig, history: History, pb: PairBar
) -> PairEstimator:
    """A fresh estimator with ``cfg``, fed the stored bars before ``pb``."""
    est, rows = _replay(history, pb.pair, pb.tf, pb.ts, cfg)
    log.info("start: %s %s settings changed since the snapshot (%s): estimators rebuilt from "
             "%d stored bars", pb.pair, pb.tf, ", ".join(changes(old.cfg, cfg, "analytics")),
             len(rows))
    return est


def machine_outdated(m: SignalMachine, s_cfg: SignalsConfig, a_cfg: AnalyticsConfig) -> bool:
    """True when a restored machine was built with other signal or analytics settings."""
    fed = getattr(m, "analytics", None)
    return m.cfg != s_cfg or (fed is not None and fed != a_cfg)


def rebuilt_machine(
    old: SignalMachine,
    s_cfg: SignalsConfig,
    a_cfg: AnalyticsConfig,
    history: History,
    pair: str,
    tf: str,
    before: datetime,
) -> SignalMachine:
    """A fresh machine with the new settings, fed the analytics of the stored bars before."""
    _, rows = _replay(history, pair, tf, before, a_cfg)
    m = SignalMachine(s_cfg, a_cfg)
    for a in rows:
        m.update(a)
    what = changes(old.cfg, s_cfg, "signals") + changes(
        getattr(old, "analytics", None), a_cfg, "analytics")
    log.info("start: %s %s settings changed since the snapshot (%s): signal state rebuilt "
             "from %d stored bars", pair, tf, ", ".join(what), len(rows))
    return m
