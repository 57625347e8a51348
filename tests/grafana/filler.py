"""Fill the pairstream tables with realistic rows from the real Binance data, for query tests.

A stand-in for a replay of the full flow: the dashboards only need tables with the real shape
(columns, keys, timeframes, warm-up NULLs, signals, alert edges, health counters), not the
estimators' exact values, which their own tests pin to reference libraries.

* ``ticks``: the window-A trades (2024-07-18 23:57 → 07-19 00:05, both symbols).
* ``bars``: 1s from those trades; 1m from the official klines (7 days of July 1–7, then
  window A's 20 minutes); 5m rolled up from the 1m.
* ``pair_analytics``: per timeframe, rolling OLS / z-score / correlation / ADF / half-life /
  a 2-state Kalman filter over the bars, computed with pandas/numpy/statsmodels; the 1m and
  5m series run across the gap between July 7 and July 18 like a restarted flow.
* ``signals``: the entry/exit state machine of ``pairstream.toml`` with paper PnL and fees.
* ``alerts``: FIRING/RESOLVED edges of ``abs(zscore) > 2`` (clear < 1.5) on 1m.
* ``feed_health``: per symbol and second: ticks, lag (exchange event − trade time), late ticks
  and zero counters for reconnects, gaps, backfilled, malformed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.tsa.stattools import adfuller

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
PAIR = "BTCUSDT/ETHUSDT"
WINDOW, Z_WINDOW, CORR_WINDOW, ADF_WINDOW, ADF_EVERY = 60, 60, 60, 120, 10
ENTRY, EXIT, FEE_BPS = 2.0, 0.5, 4.0
LATENESS_MS = 500


@dataclass(frozen=True)
class Filled:
    """Time bounds of what was written (aware UTC)."""

    first: datetime
    last: datetime
    live_first: datetime  # window A: where ticks, 1s bars and feed_health live
    rows: dict[str, int]


def _utc(ms: pd.Series) -> pd.Series:
    return pd.to_datetime(ms, unit="ms", utc=True)


def _trades(sym: str) -> pd.DataFrame:
    (path,) = DATA.glob(f"futures-um-trades-{sym}-*.csv")
    df = pd.read_csv(path, dtype={"is_buyer_maker": str})
    df["symbol"] = sym
    df["buyer_maker"] = df["is_buyer_maker"] == "true"
    df["ts"] = _utc(df["time"])
    return df


def ticks_frame() -> pd.DataFrame:
    df = pd.concat([_trades(s) for s in SYMBOLS], ignore_index=True)
    return pd.DataFrame(
        {
            "ts": df["ts"],
            "symbol": df["symbol"],
            "price": df["price"].astype(float),
            "qty": df["qty"].astype(float),
            "trade_id": df["id"].astype("int64"),
            "first_id": df["id"].astype("int64"),
            "last_id": df["id"].astype("int64"),
            "buyer_maker": df["buyer_maker"],
        }
    )


def _bars_1s(sym: str) -> pd.DataFrame:
    t = _trades(sym).set_index("ts")
    t["quote"] = t["price"] * t["qty"]
    t["taker"] = np.where(t["buyer_maker"], 0.0, t["qty"])
    r = t.resample("1s")
    out = pd.DataFrame(
        {
            "open": r["price"].first(),
            "high": r["price"].max(),
            "low": r["price"].min(),
            "close": r["price"].last(),
            "volume": r["qty"].sum(),
            "quote_volume": r["quote"].sum(),
            "trades": r["price"].count().astype("int64"),
            "taker_buy_volume": r["taker"].sum(),
        }
    )
    out["filled"] = out["trades"] == 0
    out["close"] = out["close"].ffill()
    for c in ("open", "high", "low"):
        out[c] = out[c].fillna(out["close"])
    return out


def _klines(sym: str) -> pd.DataFrame:
    paths = sorted(DATA.glob(f"klines/futures-um-klines-1m-{sym}-*.csv")) + sorted(
        DATA.glob(f"futures-um-klines-1m-{sym}-*.csv")
    )
    df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    df.index = _utc(df["open_time"])
    out = df[["open", "high", "low", "close", "volume", "quote_volume"]].astype(float)
    out["trades"] = df["count"].astype("int64")
    out["taker_buy_volume"] = df["taker_buy_volume"].astype(float)
    out["filled"] = out["trades"] == 0
    return out


def _roll_up(b: pd.DataFrame, rule: str) -> pd.DataFrame:
    g = b.groupby(b.index.floor(rule))
    out = g.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        quote_volume=("quote_volume", "sum"),
        trades=("trades", "sum"),
        taker_buy_volume=("taker_buy_volume", "sum"),
    )
    out["filled"] = out["trades"] == 0
    return out


def bars_by_tf() -> dict[str, dict[str, pd.DataFrame]]:
    """tf → symbol → OHLCV frame indexed by bar start."""
    out: dict[str, dict[str, pd.DataFrame]] = {"1s": {}, "1m": {}, "5m": {}}
    for s in SYMBOLS:
        out["1s"][s] = _bars_1s(s)
        k = _klines(s)
        out["1m"][s] = k
        out["5m"][s] = _roll_up(k, "5min")
    for frames in out.values():
        for b in frames.values():
            b["vwap"] = np.where(
                b["volume"] > 0,
                b["quote_volume"] / b["volume"].where(b["volume"] > 0, 1.0),
                b["close"],
            )
    return out


def bars_frame(bars: dict[str, dict[str, pd.DataFrame]]) -> pd.DataFrame:
    parts = []
    for tf, frames in bars.items():
        for sym, b in frames.items():
            parts.append(b.assign(symbol=sym, tf=tf).rename_axis("ts").reset_index())
    return pd.concat(parts, ignore_index=True)


def _kalman(
    x: np.ndarray, y: np.ndarray, delta: float = 1e-4, obs_var: float = 1e-3, p0: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(x)
    m = np.zeros(2)
    p = np.eye(2) * p0
    q = np.eye(2) * delta / (1 - delta)
    beta, alpha, z = np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        if i:
            p = p + q
        h = np.array([x[i], 1.0])
        e = y[i] - h @ m
        s = h @ p @ h + obs_var
        k = p @ h / s
        m = m + k * e
        p = p - np.outer(k, h) @ p
        beta[i], alpha[i], z[i] = m[0], m[1], e / math.sqrt(s)
    return beta, alpha, z


def analytics_frame(bars: dict[str, dict[str, pd.DataFrame]], tf: str) -> pd.DataFrame:
    y = bars[tf][SYMBOLS[0]]["close"]
    x = bars[tf][SYMBOLS[1]]["close"]
    df = pd.DataFrame({"y": y, "x": x}).dropna()
    cov = df["y"].rolling(WINDOW).cov(df["x"])
    beta = cov / df["x"].rolling(WINDOW).var()
    alpha = df["y"].rolling(WINDOW).mean() - beta * df["x"].rolling(WINDOW).mean()
    spread = df["y"] - beta * df["x"]
    z = (spread - spread.rolling(Z_WINDOW).mean()) / spread.rolling(Z_WINDOW).std(ddof=1)
    ly, lx = np.log(df["y"]).diff(), np.log(df["x"]).diff()
    corr = ly.rolling(CORR_WINDOW).corr(lx)
    adf = pd.Series(np.nan, index=df.index)
    hl = pd.Series(np.nan, index=df.index)
    s = spread.to_numpy()
    valid = np.flatnonzero(~np.isnan(s))
    if len(valid) >= ADF_WINDOW:
        for i in valid[ADF_WINDOW - 1 :: ADF_EVERY]:
            w = s[i - ADF_WINDOW + 1 : i + 1]
            with warnings.catch_warnings():  # statsmodels' future result-object notice
                warnings.simplefilter("ignore", FutureWarning)
                adf.iloc[i] = adfuller(w, maxlag=1, regression="c", autolag=None)[1]
            lag, d = w[:-1], np.diff(w)
            lam = np.cov(d, lag, ddof=1)[0, 1] / np.var(lag, ddof=1)
            hl.iloc[i] = -math.log(2) / lam if lam < 0 else -1.0  # -1: no reversion, NULL below
        first = valid[ADF_WINDOW - 1]
        adf.iloc[first:] = adf.iloc[first:].ffill()
        hl.iloc[first:] = hl.iloc[first:].ffill()
        hl[hl < 0] = np.nan
    bkf, akf, zkf = _kalman(df["x"].to_numpy(), df["y"].to_numpy())
    out = pd.DataFrame(
        {
            "y": df["y"],
            "x": df["x"],
            "beta": beta,
            "alpha": alpha,
            "spread": spread,
            "zscore": z,
            "corr": corr,
            "adf_p": adf,
            "beta_kf": bkf,
            "alpha_kf": akf,
            "z_kf": zkf,
            "half_life": hl,
        }
    )
    out["warm"] = out["zscore"].notna()
    return out.assign(pair=PAIR, tf=tf).rename_axis("ts").reset_index()


def signals_frame(a: pd.DataFrame) -> pd.DataFrame:
    pos, cum = 0, 0.0
    rows = []
    prev = None
    for r in a.itertuples(index=False):
        pnl = 0.0
        if prev is not None and pos and prev.beta == prev.beta:
            pnl = pos * ((r.y - prev.y) - prev.beta * (r.x - prev.x))
        action, fees = "hold", 0.0
        z = r.zscore
        if z == z:  # not NaN
            new = pos
            if pos == 0 and z >= ENTRY:
                new, action = -1, "enter_short"
            elif pos == 0 and z <= -ENTRY:
                new, action = 1, "enter_long"
            elif pos != 0 and abs(z) <= EXIT:
                new, action = 0, "exit"
            if new != pos:
                fees = FEE_BPS / 1e4 * (r.y + abs(r.beta) * r.x)
                pos = new
        pnl -= fees
        cum += pnl
        rows.append((r.ts, r.pair, r.tf, z, pos, action, r.beta, r.y, r.x, pnl, fees, cum))
        prev = r
    return pd.DataFrame(
        rows,
        columns=[
            "ts",
            "pair",
            "tf",
            "zscore",
            "position",
            "action",
            "beta",
            "y",
            "x",
            "pnl",
            "fees",
            "cum_pnl",
        ],
    )


def alerts_frame(a: pd.DataFrame) -> pd.DataFrame:
    rows, firing, last_fire = [], False, None
    for r in a.itertuples(index=False):
        z = r.zscore
        if z != z:
            continue
        if (
            not firing
            and abs(z) > 2
            and (last_fire is None or r.ts - last_fire >= pd.Timedelta(minutes=5))
        ):
            firing, last_fire = True, r.ts
            rows.append((r.ts, "FIRING", z, f"abs(zscore) > 2: zscore = {z:.3f}"))
        elif firing and abs(z) < 1.5:
            firing = False
            rows.append((r.ts, "RESOLVED", z, f"abs(zscore) < 1.5: zscore = {z:.3f}"))
    df = pd.DataFrame(rows, columns=["ts", "state", "value", "message"])
    return df.assign(
        rule_id="z-extreme",
        pair=PAIR,
        tf=a["tf"].iloc[0],
        severity="warning",
        expr="abs(zscore) > 2",
    )


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


def frames() -> dict[str, pd.DataFrame]:
    """table name → rows (column ``ts`` is the designated timestamp)."""
    bars = bars_by_tf()
    analytics = [analytics_frame(bars, tf) for tf in ("1s", "1m", "5m")]
    return {
        "ticks": ticks_frame(),
        "bars": bars_frame(bars),
        "pair_analytics": pd.concat(analytics, ignore_index=True),
        "signals": pd.concat([signals_frame(a) for a in analytics], ignore_index=True),
        "alerts": alerts_frame(analytics[1]),
        "feed_health": health_frame(),
    }


def _null(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _plain(v: object) -> object:
    """numpy scalars → Python (the client takes bool/int/float/str)."""
    return v.item() if isinstance(v, np.generic) else v


def fill(questdb) -> Filled:
    """Create the tables (schema DDL), write every frame with the official client, wait."""
    from questdb import Sender, TimestampNanos

    from connectors.schema import BY_NAME

    data = frames()
    for name in data:
        questdb.http.exec(BY_NAME[name].ddl())
    with Sender.from_conf(questdb.conf) as sender:
        for name, df in data.items():
            table = BY_NAME[name]
            syms = set(table.symbols)
            cols = [c for c, _ in table.columns]
            for rec in df[["ts", *cols]].itertuples(index=False):
                values = dict(zip(cols, rec[1:]))
                symbols = {c: str(values.pop(c)) for c in cols if c in syms}
                columns = {c: _plain(v) for c, v in values.items() if not _null(v)}
                sender.row(
                    name, symbols=symbols, columns=columns, at=TimestampNanos(int(rec[0].value))
                )
            sender.flush()
    questdb.http.wait_applied(list(data))
    all_ts = pd.concat([df["ts"] for df in data.values()])
    return Filled(
        first=all_ts.min().to_pydatetime(),
        last=all_ts.max().to_pydatetime(),
        live_first=data["ticks"]["ts"].min().to_pydatetime(),
        rows={name: len(df) for name, df in data.items()},
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)
