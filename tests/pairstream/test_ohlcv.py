"""Pure bar accumulation (:mod:`pairstream.ohlcv`) against Binance's own klines and pandas.

References, never hand-computed numbers: the official 1m klines of window A (compared as
``float(kline_string) == ours``, exactly), a pandas resample of the same trade CSV with
``Decimal`` sums of the quantity strings (so volumes compare exactly, no tolerance), and
pandas roll-ups of our own shorter bars (exact ``Decimal`` sums of their float reprs).
"""

from __future__ import annotations

import csv
import pickle
import random
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.frames import csv_trade_to_tick, ms_to_dt
from pairstream.ohlcv import Rollup, SymbolBars, to_scaled
from pairstream.records import Bar, Health, Progress, Tick

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
SHARED_EXTRA = REPO.parent / "shared" / "data" / "binance" / "extra"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
TFS = ("1s", "1m", "5m")
WINDOW_A = "2024-07-18T23-57_2024-07-19T00-05"
KLINES_A = "2024-07-18T23-50_2024-07-19T00-09"
COMPLETE_A = pd.date_range("2024-07-18 23:58", "2024-07-19 00:04", freq="1min", tz="UTC")
KLINE_FIELDS = (  # kline column → Bar attribute
    ("open", "open"),
    ("high", "high"),
    ("low", "low"),
    ("close", "close"),
    ("volume", "volume"),
    ("quote_volume", "quote_volume"),
    ("count", "trades"),
    ("taker_buy_volume", "taker_buy_volume"),
)


def trades_path(symbol: str, window: str = WINDOW_A, base: Path = SAMPLE) -> Path:
    return base / f"futures-um-trades-{symbol}-{window}.csv"


def klines_path(symbol: str, window: str = KLINES_A, base: Path = SAMPLE) -> Path:
    return base / f"futures-um-klines-1m-{symbol}-{window}.csv"


def load_ticks(symbol: str, path: Path | None = None) -> list[Tick]:
    with open(path or trades_path(symbol), newline="") as fh:
        return [csv_trade_to_tick(symbol, row) for row in csv.DictReader(fh)]


def load_klines(symbol: str, path: Path | None = None) -> dict:
    """open_time (aware datetime) → the kline row as strings."""
    with open(path or klines_path(symbol), newline="") as fh:
        return {ms_to_dt(int(r["open_time"])): r for r in csv.DictReader(fh)}


def kline_bar(symbol: str, r: dict) -> Bar:
    """A kline row as the replay source would emit it: a 1m Bar of floats."""
    vol, qv = float(r["volume"]), float(r["quote_volume"])
    return Bar(
        symbol,
        "1m",
        ms_to_dt(int(r["open_time"])),
        float(r["open"]),
        float(r["high"]),
        float(r["low"]),
        float(r["close"]),
        vol,
        qv,
        int(r["count"]),
        float(r["taker_buy_volume"]),
        qv / vol if vol else float(r["close"]),
        int(r["count"]) == 0,
    )


def run(ticks, lateness=timedelta(0), timeframes=TFS, flush=True) -> tuple[list, SymbolBars]:
    """Feed one symbol's items; return (everything drained, state). Checks no key repeats."""
    sb = SymbolBars(ticks[0].symbol, timeframes, lateness)
    out = []
    for t in ticks:
        if isinstance(t, Progress):
            sb.add_progress(t.ts)
        else:
            sb.add_tick(t)
        out += sb.drain()
    if flush:
        sb.flush()
        out += sb.drain()
    bars = [b for b in out if isinstance(b, Bar)]
    keys = [(b.symbol, b.tf, b.ts) for b in bars]
    assert len(keys) == len(set(keys)), "a (symbol, tf, ts) was emitted twice"
    for tf in timeframes:
        ts = [b.ts for b in bars if b.tf == tf]
        assert ts == sorted(ts), f"{tf} bars out of order"
    return out, sb


def bars_of(out, tf: str | None = None) -> list[Bar]:
    return [b for b in out if isinstance(b, Bar) and (tf is None or b.tf == tf)]


@pytest.fixture(scope="module")
def tapes() -> dict[str, list[Tick]]:
    return {s: load_ticks(s) for s in SYMBOLS}


@pytest.fixture(scope="module")
def built(tapes) -> dict[str, list]:
    return {s: run(tapes[s])[0] for s in SYMBOLS}


# -- the official klines -------------------------------------------------------------------


def assert_equals_klines(bars: list[Bar], klines: dict, minutes) -> None:
    by_ts = {b.ts: b for b in bars if b.tf == "1m"}
    for m in minutes:
        ours, theirs = by_ts[m.to_pydatetime()], klines[m.to_pydatetime()]
        for col, attr in KLINE_FIELDS:
            assert float(theirs[col]) == getattr(ours, attr), (m, col)
        assert not ours.filled


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_1m_bars_equal_official_klines_window_a(built, symbol):
    assert_equals_klines(built[symbol], load_klines(symbol), COMPLETE_A)


@pytest.mark.skipif(not SHARED_EXTRA.is_dir(), reason="window B lives only in ../shared")
@pytest.mark.parametrize("symbol", SYMBOLS)
def test_1m_bars_equal_official_klines_window_b(symbol):
    ticks = load_ticks(
        symbol, trades_path(symbol, "2024-08-08T23-54_2024-08-09T00-00", SHARED_EXTRA)
    )
    klines = load_klines(
        symbol, klines_path(symbol, "2024-08-08T23-50_2024-08-09T00-10", SHARED_EXTRA)
    )
    minutes = pd.date_range("2024-08-08 23:55", "2024-08-08 23:59", freq="1min", tz="UTC")
    assert_equals_klines(bars_of(run(ticks)[0]), klines, minutes)


# -- pandas references ---------------------------------------------------------------------


def pandas_1s(symbol: str) -> pd.DataFrame:
    """1s OHLCV from the CSV strings: pandas resample, Decimal sums, silent seconds filled."""
    df = pd.read_csv(trades_path(symbol), dtype={"price": str, "qty": str, "is_buyer_maker": str})
    df = df.sort_values(["time", "id"])
    df["t"] = pd.to_datetime(df["time"], unit="ms", utc=True)
    df["p"] = df["price"].astype(float)
    df["q"] = df["qty"].map(Decimal)
    df["qv"] = [Decimal(p) * Decimal(q) for p, q in zip(df["price"], df["qty"])]
    df["tb"] = [q if m == "false" else Decimal(0) for q, m in zip(df["q"], df["is_buyer_maker"])]
    r = df.set_index("t").resample("1s")

    def dsum(s: pd.Series) -> Decimal:
        return sum(s, Decimal(0))

    out = pd.DataFrame(
        {
            "open": r["p"].first(),
            "high": r["p"].max(),
            "low": r["p"].min(),
            "close": r["p"].last(),
            "volume": r["q"].apply(dsum),
            "quote_volume": r["qv"].apply(dsum),
            "trades": r["p"].count(),
            "taker_buy_volume": r["tb"].apply(dsum),
        }
    )
    out["filled"] = out["trades"] == 0
    out["close"] = out["close"].ffill()
    for c in ("open", "high", "low"):
        out[c] = out[c].fillna(out["close"])
    return out


def to_frame(bars: list[Bar]) -> pd.DataFrame:
    df = pd.DataFrame([{f: getattr(b, f) for f in Bar.__slots__} for b in bars])
    return df.set_index(pd.DatetimeIndex(df["ts"]))


def pandas_rollup(bars: list[Bar], rule: str) -> pd.DataFrame:
    """Roll up our shorter bars: O/H/L/C over traded sub-bars (a kline's rule), exact sums."""
    df = to_frame(bars)
    traded = df[~df["filled"]].resample(rule)
    every = df.resample(rule)

    def dsum(s: pd.Series) -> Decimal:
        return sum((Decimal(repr(x)) for x in s), Decimal(0))

    out = pd.DataFrame(
        {
            "open": traded["open"].first(),
            "high": traded["high"].max(),
            "low": traded["low"].min(),
            "close": every["close"].last(),
            "volume": every["volume"].apply(dsum),
            "quote_volume": every["quote_volume"].apply(dsum),
            "trades": every["trades"].sum(),
            "taker_buy_volume": every["taker_buy_volume"].apply(dsum),
            "filled": every["filled"].all(),
        }
    )
    for c in ("open", "high", "low"):
        out[c] = out[c].fillna(out["close"])
    return out


def assert_frame_matches(ours: list[Bar], ref: pd.DataFrame) -> None:
    """Exact: prices as floats, Decimal sums as correctly rounded floats, vwap via Fraction."""
    assert [b.ts for b in ours] == [t.to_pydatetime() for t in ref.index]
    for b, (_, r) in zip(ours, ref.iterrows()):
        for c in ("open", "high", "low", "close"):
            assert getattr(b, c) == r[c], (b.ts, c)
        for c in ("volume", "quote_volume", "taker_buy_volume"):
            assert getattr(b, c) == float(r[c]), (b.ts, c)
        assert b.trades == r["trades"] and b.filled == r["filled"], b.ts
        vwap = (
            float(Fraction(r["quote_volume"]) / Fraction(r["volume"])) if r["volume"] else b.close
        )
        assert b.vwap == vwap, b.ts


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_1s_bars_equal_pandas_reference(built, symbol):
    ours = bars_of(built[symbol], "1s")
    ref = pandas_1s(symbol)
    assert ref["filled"].any()  # the reference does exercise silent seconds
    assert_frame_matches(ours, ref)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_1m_is_rollup_of_1s_and_5m_of_1m(built, symbol):
    assert_frame_matches(
        bars_of(built[symbol], "1m"), pandas_rollup(bars_of(built[symbol], "1s"), "1min")
    )
    assert_frame_matches(
        bars_of(built[symbol], "5m"), pandas_rollup(bars_of(built[symbol], "1m"), "5min")
    )


def test_first_bars_start_at_first_tick_and_partial_edges(tapes, built):
    ticks, out = tapes["BTCUSDT"], built["BTCUSDT"]
    first = ticks[0].ts
    for tf, secs in (("1s", 1), ("1m", 60), ("5m", 300)):
        bars = bars_of(out, tf)
        assert bars[0].ts <= first < bars[0].ts + timedelta(seconds=secs)
        assert bars[-1].ts <= ticks[-1].ts < bars[-1].ts + timedelta(seconds=secs)
        assert not bars[0].filled


# -- lateness ------------------------------------------------------------------------------


def shuffled_within(ticks: list[Tick], lateness: timedelta, seed: int) -> list[Tick]:
    """Arrival = event time + a random delay ≤ lateness: every tick is ≥ running max − lateness."""
    rng = random.Random(seed)
    us = lateness // timedelta(microseconds=1)
    keyed = [(t.ts + timedelta(microseconds=rng.randint(0, us)), i) for i, t in enumerate(ticks)]
    order = [ticks[i] for _, i in sorted(keyed)]
    running = order[0].ts
    for t in order:  # the premise of the test, checked
        assert t.ts >= running - lateness
        running = max(running, t.ts)
    return order


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("lateness_ms,seed", [(500, 1), (500, 2), (2000, 3)])
def test_shuffled_within_lateness_gives_identical_bars(tapes, built, symbol, lateness_ms, seed):
    lateness = timedelta(milliseconds=lateness_ms)
    arrival = shuffled_within(tapes[symbol], lateness, seed)
    assert arrival != tapes[symbol]
    out, sb = run(arrival, lateness)
    assert sb.late_total == 0
    assert bars_of(out) == bars_of(built[symbol])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 8_000),  # ms offset
            st.integers(1, 50),  # price in 0.1 steps
            st.integers(1, 5_000),  # qty in 0.001 steps
            st.booleans(),
            st.integers(0, 1_000),  # arrival delay in ms, capped by the lateness below
        ),
        min_size=1,
        max_size=60,
    ),
    st.integers(0, 1_500),
)
def test_any_arrival_order_within_lateness_is_invisible(rows, lateness_ms):
    base = 1_721_347_000_000
    ticks = [
        Tick("XYZUSDT", ms_to_dt(base + ms), p / 10, q / 1000, i, i, i, m)
        for i, (ms, p, q, m, _) in enumerate(sorted(rows, key=lambda r: r[0]))
    ]
    lateness = timedelta(milliseconds=lateness_ms)
    delays = [min(r[4], lateness_ms) for r in sorted(rows, key=lambda r: r[0])]
    order = sorted(
        range(len(ticks)),
        key=lambda i: (ticks[i].ts + timedelta(milliseconds=delays[i]), ticks[i].trade_id),
    )
    arrival = [ticks[i] for i in order]
    out_a, sb_a = run(arrival, lateness)
    out_b, _ = run(ticks, timedelta(0))
    assert sb_a.late_total == 0
    assert bars_of(out_a) == bars_of(out_b)


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_ticks_beyond_lateness_change_no_bar_and_are_counted(tapes, symbol):
    ticks = tapes[symbol]
    lateness = timedelta(milliseconds=500)
    rng = random.Random(7)
    picked = set(rng.sample(range(100, len(ticks) - 2000), 50))
    arrival = [t for i, t in enumerate(ticks) if i not in picked]
    for i in sorted(picked):
        late = ticks[i]
        # deliver it once the watermark has passed the end of its second
        j = next(
            k for k, t in enumerate(arrival) if t.ts >= late.ts + lateness + timedelta(seconds=1)
        )
        arrival.insert(j + 1, late)
    out, sb = run(arrival, lateness)
    expected, _ = run([t for i, t in enumerate(ticks) if i not in picked], lateness)
    assert bars_of(out) == bars_of(expected)
    assert sb.late_total == 50
    health = [h for h in out if isinstance(h, Health)]
    assert {h.metric for h in health} == {"late_ticks"} and {h.symbol for h in health} == {symbol}
    upserted = {(h.ts, h.symbol, h.metric): h.value for h in health}  # what DEDUP UPSERT keeps
    assert sum(upserted.values()) == 50


# -- progress, end of input, recovery --------------------------------------------------------


def test_progress_closes_a_silent_symbols_bars(tapes):
    ticks = tapes["ETHUSDT"][:200]
    lateness = timedelta(milliseconds=500)
    last = ticks[-1].ts
    progress = last + timedelta(minutes=12, milliseconds=300)
    out, sb = run([*ticks, Progress("ETHUSDT", progress)], lateness, flush=False)
    ones = bars_of(out, "1s")
    closed = (progress - lateness).replace(microsecond=0)  # first second still open
    assert ones[-1].ts == closed - timedelta(seconds=1)
    assert [b.ts for b in ones] == [ones[0].ts + timedelta(seconds=i) for i in range(len(ones))]
    silent = [b for b in ones if b.ts > last]
    assert len(silent) > 400 and all(b.filled for b in silent)
    assert all(b.open == b.high == b.low == b.close == ticks[-1].price for b in silent)
    assert all(
        b.volume == b.quote_volume == b.taker_buy_volume == 0 and b.trades == 0 for b in silent
    )
    minutes = bars_of(out, "1m")
    assert minutes[-1].ts + timedelta(minutes=1) <= closed
    assert any(b.filled for b in minutes) and any(b.filled for b in bars_of(out, "5m"))
    # a tick behind progress − lateness is late, however the feed is otherwise silent
    sb.add_tick(Tick("ETHUSDT", closed - timedelta(seconds=2), 1.0, 1.0, 1, 1, 1, True))
    assert sb.late_total == 1 and not bars_of(sb.drain())


def test_progress_before_any_tick_emits_nothing():
    sb = SymbolBars("ETHUSDT", TFS, timedelta(0))
    sb.add_progress(ms_to_dt(1_721_347_000_000))
    assert sb.drain() == []


def test_eof_flushes_open_bars_once(tapes):
    ticks = tapes["BTCUSDT"]
    cut = len(ticks) // 2
    out, sb = run(ticks[:cut], timedelta(milliseconds=500), flush=False)
    before = {(b.tf, b.ts) for b in bars_of(out)}
    sb.flush()
    flushed = bars_of(sb.drain())
    assert {b.tf for b in flushed} == set(TFS)
    assert not before & {(b.tf, b.ts) for b in flushed}
    assert max(b.ts for b in flushed if b.tf == "1s") == ticks[cut - 1].ts.replace(microsecond=0)
    # a resumed feed: ticks inside flushed intervals are late, later ones make new bars only
    for t in ticks[cut:]:
        sb.add_tick(t)
    sb.flush()
    after = bars_of(sb.drain())
    keys = before | {(b.tf, b.ts) for b in flushed}
    assert not keys & {(b.tf, b.ts) for b in after}
    assert sb.late_total == sum(
        1 for t in ticks[cut:] if t.ts < flushed[-1].ts + timedelta(minutes=5)
    )


def test_snapshot_restore_mid_stream_gives_identical_bars(tapes, built):
    ticks = tapes["BTCUSDT"]
    sb = SymbolBars("BTCUSDT", TFS, timedelta(milliseconds=500))
    out = []
    for i, t in enumerate(ticks):
        sb.add_tick(t)
        if i % 3000 == 0:
            out += sb.drain()
            sb = pickle.loads(pickle.dumps(sb))  # what recovery stores and restores
    sb.flush()
    out += sb.drain()
    assert bars_of(out) == bars_of(built["BTCUSDT"])
    assert len(sb.buckets) <= 2 and all(lv.acc is None for lv in sb.levels)  # bounded state


# -- standalone roll-up of klines ------------------------------------------------------------


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_rollup_of_official_1m_klines(symbol, built):
    klines = [kline_bar(symbol, r) for r in load_klines(symbol).values()]
    ru = Rollup(symbol, "1m", TFS)
    for b in klines:
        ru.add_bar(b)
    ru.flush()
    out = ru.drain()
    assert bars_of(out, "1m") == klines and not bars_of(out, "1s")
    five = bars_of(out, "5m")
    assert_frame_matches(five, pandas_rollup(klines, "5min"))
    # from trades or from official klines, the complete 5m bar is the same to the last digit
    ours = {b.ts: b for b in bars_of(built[symbol], "5m")}
    full = [b for b in five if b.ts == COMPLETE_A[2].to_pydatetime()]
    assert full and full[0] == ours[full[0].ts]
    ru.add_bar(klines[3])  # out of order: dropped, no second version of an emitted bar
    assert ru.dropped == 1 and ru.drain() == []


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**15 - 1), st.integers(0, 8))
def test_to_scaled_recovers_the_decimal(n, decimals):
    text = str(Decimal(n).scaleb(-decimals))
    assert to_scaled(float(text)) == int(Decimal(text).scaleb(8))
