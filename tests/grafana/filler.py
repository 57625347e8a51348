"""Fill the pairstream tables for the Grafana query tests — by running the real flow.

* Window A (`config/demo.toml`: 8 minutes of BTCUSDT and ETHUSDT futures trades) → ticks,
  1s/1m/5m bars, pair_analytics, signals.
* The week of official 1m klines (`config/week.toml`, offline OHLC mode) → 1m/5m bars,
  pair_analytics, signals and alerts from its three rules.
* ``feed_health``: what only a live feed reports (ticks per second, lag, reconnects, gaps,
  backfill, malformed frames) cannot come from a replay, so it is derived here from the real
  recorded frames of window A (lag = exchange event time − trade time) with zero fault
  counters; the live-source tests cover the real counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from tests.conftest import REPO, SAMPLE, run_flow

SYMBOLS = ("BTCUSDT", "ETHUSDT")
LATENESS_MS = 500


@dataclass(frozen=True)
class Filled:
    """Time bounds of what was written (aware UTC)."""

    first: datetime
    last: datetime
    live_first: datetime  # window A: where ticks, 1s bars and feed_health live
    rows: dict[str, int]


def _trades(sym: str) -> pd.DataFrame:
    (path,) = SAMPLE.glob(f"futures-um-trades-{sym}-*.csv")
    df = pd.read_csv(path, dtype={"is_buyer_maker": str})
    df["ts"] = pd.to_datetime(df["time"], unit="ms", utc=True)
    return df


def health_frame() -> pd.DataFrame:
    parts = []
    for sym in SYMBOLS:
        t = _trades(sym).sort_values("recv_ts_ns")
        t["late"] = t["time"] < t["time"].cummax() - LATENESS_MS
        t["lag"] = (t["event_time"] - t["time"]).astype(float)
        g = t.set_index("ts").resample("1s")
        per = pd.DataFrame(
            {
                "ticks": g["id"].count().astype(float),
                "lag_ms": g["lag"].max(),
                "late_ticks": g["late"].sum().astype(float),
            }
        )
        per["lag_ms"] = per["lag_ms"].fillna(0.0)
        for m in ("reconnects", "gaps", "backfilled", "malformed"):
            per[m] = 0.0
        long = (
            per.rename_axis("ts")
            .reset_index()
            .melt(id_vars="ts", var_name="metric", value_name="value")
        )
        parts.append(long.assign(symbol=sym))
    return pd.concat(parts, ignore_index=True)


def _write_health(questdb) -> None:
    from questdb import Sender, TimestampNanos

    from connectors.schema import FEED_HEALTH

    questdb.http.exec(FEED_HEALTH.ddl())
    with Sender.from_conf(questdb.conf) as sender:
        for r in health_frame().itertuples(index=False):
            sender.row(
                "feed_health",
                symbols={"symbol": r.symbol, "metric": r.metric},
                columns={"value": float(r.value)},
                at=TimestampNanos(int(r.ts.value)),
            )


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def fill(questdb) -> Filled:
    """Replay window A and the kline week through the flow, add feed health, wait for WAL."""
    run_flow(questdb, REPO / "config" / "demo.toml")
    run_flow(questdb, REPO / "config" / "week.toml")
    _write_health(questdb)
    http = questdb.http
    http.wait_applied()
    names = ("ticks", "bars", "pair_analytics", "signals", "alerts", "feed_health")
    spans = {n: http.query(f"SELECT count() n, min(ts) lo, max(ts) hi FROM {n}")[0] for n in names}
    return Filled(
        first=min(_ts(s["lo"]) for s in spans.values()),
        last=max(_ts(s["hi"]) for s in spans.values()),
        live_first=_ts(spans["ticks"]["lo"]),
        rows={n: s["n"] for n, s in spans.items()},
    )
