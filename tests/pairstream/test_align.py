"""Pair alignment: interleaving-independent and forward-filled, against a pandas join."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pairstream.align import PairAligner
from pairstream.records import Bar, PairBar

T0 = datetime(2024, 7, 1, tzinfo=timezone.utc)


def bar(sym: str, minute: int, close: float, tf: str = "1m") -> Bar:
    ts = T0 + timedelta(minutes=minute)
    return Bar(sym, tf, ts, close, close, close, close, 1.0, close, 1, 0.5, close, False)


def pandas_reference(y_bars: list[Bar], x_bars: list[Bar]) -> list[PairBar]:
    """Outer join on ts, forward fill, keep intervals both legs have reached."""
    if not y_bars or not x_bars:
        return []
    y = pd.Series({b.ts: b.close for b in y_bars}, dtype=float)
    x = pd.Series({b.ts: b.close for b in x_bars}, dtype=float)
    df = pd.concat({"y": y, "x": x}, axis=1, sort=True).sort_index().ffill().dropna()
    df = df[df.index <= min(y.index.max(), x.index.max())]
    return [PairBar("Y/X", "1m", ts.to_pydatetime(), r.y, r.x) for ts, r in df.iterrows()]


legs = st.lists(st.integers(0, 40), unique=True, max_size=25).map(sorted)


@settings(max_examples=200, deadline=None)
@given(ys=legs, xs=legs, seed=st.integers(0, 2**32 - 1))
def test_any_interleaving_gives_the_reference(ys: list[int], xs: list[int], seed: int) -> None:
    y_bars = [bar("Y", m, 100.0 + m) for m in ys]
    x_bars = [bar("X", m, 10.0 + m / 8) for m in xs]
    # a random merge that keeps each leg's own order
    rng = random.Random(seed)
    labels = ["y"] * len(y_bars) + ["x"] * len(x_bars)
    rng.shuffle(labels)
    iy, ix = iter(y_bars), iter(x_bars)
    merged = [next(iy) if lb == "y" else next(ix) for lb in labels]

    results = []
    for order in (merged, y_bars + x_bars, x_bars + y_bars):
        al = PairAligner("Y", "X", "1m")
        results.append([pb for b in order for pb in al.push(b)])
    assert results[0] == results[1] == results[2]
    assert results[0] == pandas_reference(y_bars, x_bars)
    ts = [pb.ts for pb in results[0]]
    assert ts == sorted(set(ts))  # strictly increasing


def test_silent_leg_is_forward_filled_and_duplicates_ignored() -> None:
    al = PairAligner("Y", "X", "1m")
    out = []
    for b in [bar("Y", 0, 1.0), bar("X", 0, 2.0), bar("Y", 1, 3.0), bar("Y", 2, 4.0),
              bar("Y", 2, 99.0), bar("X", 3, 5.0), bar("Y", 3, 6.0)]:  # fmt: skip
        out += al.push(b)
    assert [(pb.ts.minute, pb.y, pb.x) for pb in out] == [
        (0, 1.0, 2.0), (1, 3.0, 2.0), (2, 4.0, 2.0), (3, 6.0, 5.0)
    ]  # fmt: skip
    assert al.ignored == 1


def test_nothing_before_both_first_bars() -> None:
    al = PairAligner("Y", "X", "1m")
    out = [pb for b in [bar("Y", 0, 1.0), bar("Y", 1, 2.0), bar("Y", 2, 3.0)] for pb in al.push(b)]
    assert out == []
    out = al.push(bar("X", 1, 7.0))
    assert [(pb.ts.minute, pb.y, pb.x) for pb in out] == [(1, 2.0, 7.0)]




def test_state_survives_pickling() -> None:
    import pickle

    al = PairAligner("Y", "X", "1m")
    al.push(bar("Y", 0, 1.0))
    al.push(bar("Y", 1, 2.0))
    al = pickle.loads(pickle.dumps(al))
    assert [(pb.ts.minute, pb.y, pb.x) for pb in al.push(bar("X", 1, 5.0))] == [(1, 2.0, 5.0)]


def test_a_stuck_leg_is_forward_filled_after_max_pending_bars() -> None:
    """x stalls after minute 10 while y runs to 30: y never holds more than ``max_pending``
    bars; the intervals it pushes out carry x's last close (pandas ffill of x's bars so far);
    x's bars for those intervals come late and only update the carry; later ones align again."""
    y_bars = [bar("Y", m, 100.0 + m) for m in range(31)]
    x_bars = [bar("X", m, 50.0 + m) for m in range(31)]
    al = PairAligner("Y", "X", "1m", "Y/X", max_pending=5)
    out: list[PairBar] = []
    for m in range(11):
        out += al.push(y_bars[m]) + al.push(x_bars[m])
    for m in range(11, 31):  # x is stuck
        out += al.push(y_bars[m])
        assert len(al._legs["Y"].pending) <= 5
    assert al.forced == 25 - 10 and out[-1].ts == y_bars[25].ts
    want = pandas_reference(y_bars[:26], x_bars[:11] + [replace(x_bars[10], ts=y_bars[25].ts)])
    assert out == want
    for m in range(11, 31):  # x comes back; 11..25 are late, 26.. align with real closes
        out += al.push(x_bars[m])
    assert al.late == 15
    assert out[26:] == pandas_reference(y_bars, x_bars)[26:]
    assert [pb.ts for pb in out] == [b.ts for b in y_bars]  # each interval once, in order


@settings(max_examples=200, deadline=None)
@given(ys=legs, xs=legs)
def test_align_closes_is_what_the_aligner_emits(ys: list[int], xs: list[int]) -> None:
    """The scanner's whole-sample alignment equals PairAligner over the same gapped legs."""
    import numpy as np

    from pairstream.align import align_closes

    y_bars = [bar("Y", m, 100.0 + m) for m in ys]
    x_bars = [bar("X", m, 10.0 + m / 8) for m in xs]
    al = PairAligner("Y", "X", "1m")
    want = [pb for b in y_bars + x_bars for pb in al.push(b)]
    ts, cy, cx = align_closes(
        np.array(ys, dtype=np.int64), np.array([b.close for b in y_bars]),
        np.array(xs, dtype=np.int64), np.array([b.close for b in x_bars]),
    )  # fmt: skip
    got = [
        PairBar("Y/X", "1m", T0 + timedelta(minutes=int(t)), float(a), float(b))
        for t, a, b in zip(ts, cy, cx)
    ]
    assert got == want
