"""200 streams on one connection under Binance's REST weight limit, with the connection dropped
every second or so: no 418, never more than 2,400 weight in a minute, no trade lost.

Time is scaled, explicitly: the fake's rate-limit "minute" is ``60 / SCALE`` wall seconds, its
tape plays at ``SCALE``× real time, and every duration of the client (budget window, verify
timeout, backoff, healthy minute, ban) is divided by ``SCALE``. Weights and limits are Binance's
own: 2,400 per minute, 20 per aggTrades page. Scaling makes the test harsher than real life,
not softer: the network and thread latencies do not shrink with it.
"""

from __future__ import annotations

import time
from collections import Counter

from connectors.binance import BinanceSource
from connectors.binance_budget import RestBudget
from connectors.frames import rest_agg_to_tick
from pairstream.records import Tick
from tests.fakes.exchange import FakeBinance, Faults
from tests.fakes.tape import aggregate, load_frames, merge_tapes, quiet_frames

SCALE = 10.0
MINUTE = 60.0 / SCALE  # wall seconds of one rate-limit minute, in the fake and in the client
SPAN_MS = 4 * 60_000  # four minutes of exchange time (24 s of wall time)
N_QUIET = 198
TIMEOUT = 100.0  # seconds; the run normally takes ~35-45 s


def test_200_streams_dropped_every_second_stay_under_the_weight_limit(capsys):
    real = load_frames()
    t0 = real[0].trade.T
    busy = [f for f in real if f.trade.T < t0 + SPAN_MS]  # BTCUSDT, ETHUSDT: the real tape
    tape = merge_tapes(busy, quiet_frames(N_QUIET, t0, SPAN_MS, seed=17))
    aggs = aggregate(f.trade for f in tape)
    expected: dict[str, list[Tick]] = {}
    for g in aggs:
        expected.setdefault(g.symbol, []).append(rest_agg_to_tick(g.symbol, g.rest_row()))
    symbols = sorted(expected)
    assert len(symbols) == 200 and min(len(v) for v in expected.values()) >= 3
    # Every symbol starts with a known last id (a restart): each must prove continuity.
    resume = {s: ticks[0].trade_id - 1 for s, ticks in expected.items()}
    final = {s: ticks[-1].trade_id for s, ticks in expected.items()}
    faults = Faults(drop_every=200, drops=10, abnormal_every=2, weight_limit=2400,
                    minute=MINUTE, ban=120.0 / SCALE)
    budget = RestBudget(2400, window=MINUTE)
    with FakeBinance(tape, speed=SCALE, faults=faults) as fake:
        src = BinanceSource(
            symbols, "aggTrade", fake.ws_url, fake.rest_url, budget=budget,
            backoff_base=0.5 / SCALE, backoff_cap=30.0 / SCALE, stall_timeout=30.0 / SCALE,
            verify_timeout=1.0 / SCALE, healthy_after=60.0 / SCALE,
            rest_ban_backoff=120.0 / SCALE, progress_interval=0.1 / SCALE)
        part = src.build_part("binance", "conn-0", resume)
        got: list = []
        t_start = time.monotonic()
        deadline = t_start + TIMEOUT
        while part.snapshot() != final:
            assert time.monotonic() < deadline, f"missing: {_missing(part.snapshot(), final)}"
            got += part.next_batch()
            time.sleep(0.01)
        elapsed = time.monotonic() - t_start
        part.close()
        stats = fake.stats
    statuses = Counter(st for _, st in stats.rest)
    per_minute = [stats.weight.get(m, 0) for m in range(max(stats.weight) + 1)]
    with capsys.disabled():
        print(f"\n[200 streams] {elapsed:.1f}s wall, {stats.drops} drops, {stats.connections} "
              f"connections, REST {dict(statuses)}, weight per (scaled) minute {per_minute}")
    assert stats.drops >= 8  # the backoff grows (no connection lives a healthy minute)
    assert statuses[418] == 0 and statuses[429] == 0
    assert max(per_minute) <= 2400
    assert max(per_minute) >= 0.8 * 2160  # demand exceeded the budget: it was the limit
    assert statuses[200] > 2 * 200  # the reconnects really sent the symbols to REST
    for s in symbols:
        assert [t for t in got if type(t) is Tick and t.symbol == s] == expected[s], s


def _missing(last: dict[str, int], final: dict[str, int]) -> dict[str, tuple]:
    return {s: (last.get(s), v) for s, v in final.items() if last.get(s) != v}
