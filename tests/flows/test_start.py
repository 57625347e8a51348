"""Event-sourced start (issue 16): every live start resumes from the store, warms up from the
exchange's history, backfills trades over REST and only then goes live.

The fake exchange (in this process) serves the window A tape over WebSocket + REST, its clock
(``/fapi/v1/time``) and the official 1m klines of ``data/sample/``; the flow is a child process
(``python -m bytewax.run flows.pairs``) that runs to ``[source] until`` and exits by itself.
The fake's cursor is advanced before the first start, so that the warm-up's cut (the last minute
boundary that leaves the 1s windows full) falls inside the tape: before it the exchange's
history is the official klines, after it the tape's trades, and the two describe one market.
"""

from __future__ import annotations

import bisect
import random
import subprocess
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pytest

from connectors.questdb_sink import drop_tables, ensure_tables
from pairstream.config import AnalyticsConfig
from tests.fakes.exchange import FakeBinance
from tests.fakes.tape import SYMBOLS_A, load_frames, load_klines
from tests.flows.test_recovery import CONFIG, SPEED, UNTIL, run_live, tail
from tests.reference import assert_analytics_equal, reference_analytics

MS = 1000
UNTIL_MS = int(datetime(2024, 7, 19, 0, 5, tzinfo=timezone.utc).timestamp() * MS)
A_1M = AnalyticsConfig(window=3, z_window=3, corr_window=3, adf_window=10, adf_every=10)


@pytest.fixture(scope="module")
def frames():
    return load_frames()


def at(frames, hh: int, mm: int, ss: int = 0) -> int:
    """Tape index of the first trade at or after 2024-07-19 hh:mm:ss (23:xx is the day before)."""
    day = 18 if hh == 23 else 19
    ms = int(datetime(2024, 7, day, hh, mm, ss, tzinfo=timezone.utc).timestamp() * MS)
    return bisect.bisect_left([f.trade.T for f in frames], ms)


def config(path: Path, fake: FakeBinance, extra: str = "") -> Path:
    path.write_text(CONFIG.format(ws_url=fake.ws_url, rest_url=fake.rest_url, until=UNTIL)
                    + extra)
    return path


def klines_frame(symbol: str) -> pd.DataFrame:
    cols = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
            "trades", "taker_buy_volume", "tbq", "ignore"]
    df = pd.DataFrame(load_klines(symbol), columns=cols)
    df["ts"] = pd.to_datetime(df["open_time"], unit="ms", utc=True)
    for c in ("open", "high", "low", "close", "volume"):
        df[c] = df[c].astype(float)
    return df.set_index("ts")


def bars_1m(http, symbol: str) -> pd.DataFrame:
    rows = http.query(f"SELECT * FROM bars WHERE symbol = '{symbol}' AND tf = '1m' ORDER BY ts")
    df = pd.DataFrame(rows)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df.set_index("ts")


def assert_ticks_are_the_served_trades(http, fake: FakeBinance) -> None:
    """Every aggTrade the fake served before UNTIL is in ``ticks`` exactly once, and those are a
    gap-free id range per symbol (nothing lost between the runs)."""
    for sym in SYMBOLS_A:
        got = [r["trade_id"] for r in http.query(
            f"SELECT trade_id FROM ticks WHERE symbol = '{sym}' ORDER BY trade_id")]
        served = sorted(g.a for g in fake.aggs(sym)
                        if (sym, g.a) in fake.served and g.T < UNTIL_MS)
        assert len(got) == len(set(got)), f"{sym}: a trade is stored twice"
        assert got == served, f"{sym}: stored {len(got)} trades, the fake served {len(served)}"
        assert got == list(range(got[0], got[-1] + 1)), f"{sym}: a gap in the stored trades"


def assert_minutes_equal_klines(http, first_live: pd.Timestamp) -> None:
    """Every stored 1m bar of a complete minute equals the official kline (OHLCV, trades)."""
    for sym in SYMBOLS_A:
        got, want = bars_1m(http, sym), klines_frame(sym)
        got = got[got.index < pd.Timestamp(UNTIL)]
        assert got.index[0] < first_live <= got.index[-1]  # history and live minutes alike
        assert len(got) == len(got.index.unique())
        for c in ("open", "high", "low", "close", "volume", "trades"):
            np.testing.assert_array_equal(got[c].to_numpy(), want.loc[got.index, c].to_numpy(),
                                          err_msg=f"{sym} 1m {c}")


def first_trade_ts(http) -> pd.Timestamp:
    r = http.query("SELECT min(ts) ts FROM ticks")
    return pd.Timestamp(r[0]["ts"]).floor("1min")


def test_kill_9_without_recovery_resumes_from_the_store(questdb, frames, tmp_path):
    """SIGKILL twice mid-tape (seeded 3-5 s after the first ticks are stored, then after each
    restart; the tape at 8× real time goes on meanwhile), restarting each time WITHOUT ``-r``:
    the store is the only memory."""
    drop_tables(questdb.http)
    ensure_tables(questdb.conf)
    log = tmp_path / "flow.log"
    rng = random.Random(16)
    delays = [rng.uniform(3.0, 5.0) for _ in range(2)]
    kills: list[tuple[float, int]] = []
    started = [0.0]
    seen_ticks = [False]

    def killer(proc: subprocess.Popen, fake: FakeBinance) -> Optional[str]:
        if not seen_ticks[0]:
            if questdb.http.query("SELECT count() n FROM ticks")[0]["n"] == 0:
                return None
            seen_ticks[0] = True
            started[0] = time.monotonic()
        if len(kills) < len(delays) and time.monotonic() - started[0] >= delays[len(kills)]:
            proc.kill()
            kills.append((round(delays[len(kills)], 2), fake.cursor))
            return "killed"
        return None

    with FakeBinance(frames, speed=8) as fake:
        fake.advance(at(frames, 0, 0))  # the exchange's clock: 00:00, history before it
        cfg = config(tmp_path / "live.toml", fake)
        for _ in range(len(delays) + 1):
            started[0] = time.monotonic()
            code, how = run_live(questdb, cfg, fake, (), log, killer)
            if how != "killed":
                break
            assert code == -9
        assert code == 0, tail(log)
    print(f"\nkills (seconds after start, tape index of {len(frames)}): {kills}")
    assert len(kills) == 2 and kills[-1][1] < at(frames, 0, 4)  # both mid-tape
    text = log.read_text()
    assert text.count("resumes after stored trade") == 2 * len(SYMBOLS_A)
    questdb.http.wait_applied()
    assert_ticks_are_the_served_trades(questdb.http, fake)
    assert_minutes_equal_klines(questdb.http, first_trade_ts(questdb.http))


def test_live_start_warms_up_from_klines_and_trades(questdb, frames, tmp_path):
    """A cold start at 00:03:30 of the tape: the 1m history (klines 23:50-00:01) and the trades
    from 00:02 (REST) make the first 1m bar built from trades warm, and every 1m row equals the
    reference over the served klines followed by the bars built from trades."""
    drop_tables(questdb.http)
    log = tmp_path / "flow.log"
    with FakeBinance(frames, speed=SPEED) as fake:
        fake.advance(at(frames, 0, 3, 30))
        cfg = config(tmp_path / "live.toml", fake)
        t0 = time.monotonic()
        code, _ = run_live(questdb, cfg, fake, (), log)
        assert code == 0, tail(log)
    print(f"\nwarm start run: {time.monotonic() - t0:.1f}s, {fake.stats.klines} kline rows")
    questdb.http.wait_applied()
    http = questdb.http
    first_live = first_trade_ts(http)
    assert first_live == pd.Timestamp("2024-07-19T00:02:00Z")  # cut = floor(now − 89 s, 1m)
    assert_minutes_equal_klines(http, first_live)
    closes = {}
    for sym in SYMBOLS_A:
        k = klines_frame(sym)["close"]
        b = bars_1m(http, sym)["close"]
        served = k[k.index < first_live]
        closes[sym] = pd.concat([served, b[b.index >= first_live]])
    y, x = closes["BTCUSDT"], closes["ETHUSDT"]
    assert (y.index == x.index).all() and y.index[0] == pd.Timestamp("2024-07-18T23:50:00Z")
    rows = http.query("SELECT * FROM pair_analytics WHERE tf = '1m' ORDER BY ts")
    assert [pd.Timestamp(r["ts"]) for r in rows] == list(y.index)
    live = [r for r in rows if pd.Timestamp(r["ts"]) >= first_live]
    assert live[0]["warm"] and live[0]["adf_p"] is not None  # the first live row is warm
    ref = reference_analytics(y.to_numpy(), x.to_numpy(), A_1M)
    assert_analytics_equal([_ns(r) for r in rows], ref)


def _ns(row: dict):
    from types import SimpleNamespace

    return SimpleNamespace(**row)


def _frame(rows: list[dict]) -> list:
    return [_ns(r) for r in rows]


def test_recovery_resume_with_changed_window_and_entry_rebuilds_from_stored_bars(
    questdb, frames, tmp_path
):
    """Run with ``-r``, SIGKILL mid-tape, change ``[analytics.1m] window`` (3 → 4) and
    ``[signals] entry`` (2 → 1), resume with ``-r``: the snapshot's estimator and signal state is
    rebuilt from the stored bars, so every 1m row from the resumed bar on equals the reference
    with the new settings over all stored bars, and the rows before it the old settings'."""
    import re

    from flows.cli import init_recovery
    from pairstream.config import SignalsConfig
    from tests.flows.test_recovery import RECOVERY_ARGS
    from tests.reference import reference_signals

    drop_tables(questdb.http)
    ensure_tables(questdb.conf)
    rec = tmp_path / "recovery"
    init_recovery(rec)
    log = tmp_path / "flow.log"
    seen = [0.0]

    def killer(proc: subprocess.Popen, fake: FakeBinance) -> Optional[str]:
        if not seen[0]:
            if questdb.http.query("SELECT count() n FROM ticks")[0]["n"] == 0:
                return None
            seen[0] = time.monotonic()
        if time.monotonic() - seen[0] >= 4.0:
            proc.kill()
            return "killed"
        return None

    with FakeBinance(frames, speed=8) as fake:
        fake.advance(at(frames, 0, 0))
        cfg = config(tmp_path / "live.toml", fake)
        code, how = run_live(questdb, cfg, fake, ("-r", str(rec), *RECOVERY_ARGS), log, killer)
        assert how == "killed", tail(log)
        text = cfg.read_text()
        assert "[analytics.1m]\nwindow = 3\n" in text
        cfg.write_text(text.replace("[analytics.1m]\nwindow = 3\n", "[analytics.1m]\nwindow = 4\n")
                       + "\n[signals]\nentry = 1.0\n")
        code, _ = run_live(questdb, cfg, fake, ("-r", str(rec), *RECOVERY_ARGS), log)
        assert code == 0, tail(log)
    out = log.read_text()
    m = re.search(r"BTCUSDT/ETHUSDT 1m settings changed since the snapshot \(([^)]*)\): "
                  r"estimators rebuilt from (\d+) stored bars", out)
    assert m, tail(log)
    assert m.group(1) == "analytics.window 3→4"
    assert re.search(r"BTCUSDT/ETHUSDT 1m settings changed since the snapshot \(signals.entry "
                     r"2.0→1.0, analytics.window 3→4\): signal state rebuilt", out)
    n = int(m.group(2))
    questdb.http.wait_applied()
    http = questdb.http
    y, x = (bars_1m(http, s)["close"] for s in SYMBOLS_A)
    assert (y.index == x.index).all()
    rows = http.query("SELECT * FROM pair_analytics WHERE tf = '1m' ORDER BY ts")
    sig = pd.DataFrame(http.query("SELECT * FROM signals WHERE tf = '1m' ORDER BY ts"))
    assert len(rows) == len(sig) == len(y) and 0 < n < len(y) - 1
    new_cfg = replace(A_1M, window=4)
    ref_new = reference_analytics(y.to_numpy(), x.to_numpy(), new_cfg)
    ref_old = reference_analytics(y.to_numpy(), x.to_numpy(), A_1M)
    assert_analytics_equal(_frame(rows[n:]), ref_new.iloc[n:].reset_index(drop=True))
    assert_analytics_equal(_frame(rows[:n]), ref_old.iloc[:n].reset_index(drop=True))
    rs = reference_signals(ref_new["zscore"].to_numpy(), ref_new["beta"].to_numpy(),
                           y.to_numpy(), x.to_numpy(), SignalsConfig(entry=1.0))
    assert (sig["position"].to_numpy()[n:] == rs["position"].to_numpy()[n:]).all()
    assert (sig["action"].to_numpy()[n:] == rs["action"].to_numpy()[n:]).all()
    np.testing.assert_allclose(sig["cum_pnl"].to_numpy()[n:], rs["cum_pnl"].to_numpy()[n:],
                               rtol=1e-9, atol=1e-9)
    assert (rs["action"].to_numpy()[n:] != "hold").any()  # the new entry level trades
