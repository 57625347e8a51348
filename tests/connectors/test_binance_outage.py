"""Binance unreachable: one log line per reconnect attempt, near-idle worker; refused handshakes.

(429 / 418 handling: tests/connectors/test_binance_budget.py.)"""

from __future__ import annotations

import logging
import re
import time

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from connectors.binance import BinanceSource
from pairstream.records import Health, Progress, Tick
from tests.fakes.exchange import FakeBinance, Faults, refused_port

LINE = re.compile(r"binance conn-0: (.+); reconnect attempt (\d+) in (\d+\.\d\d)s$")


def test_unreachable_logs_each_attempt_with_backoff_and_worker_idles(caplog, capsys):
    caplog.set_level(logging.WARNING, logger="pairstream.binance")
    base, cap, wall = 0.05, 0.4, 3.0
    url = f"ws://127.0.0.1:{refused_port()}/market/stream"
    deadline = time.monotonic() + wall
    src = BinanceSource(["BTCUSDT", "ETHUSDT"], "aggTrade", url, "http://127.0.0.1:9",
                        backoff_base=base, backoff_cap=cap,
                        stop_when=lambda last: time.monotonic() > deadline)
    out: list = []
    flow = Dataflow("binance_unreachable")
    op.output("out", op.input("binance", flow, src), TestingSink(out))
    cpu0, t0 = time.process_time(), time.monotonic()
    run_main(flow)
    cpu, elapsed = time.process_time() - cpu0, time.monotonic() - t0
    with capsys.disabled():
        print(f"\n[binance unreachable] process CPU {cpu:.3f}s over {elapsed:.2f}s wall "
              f"({100 * cpu / elapsed:.1f}% of one core; poll interval 10 ms)")
    lines = [LINE.search(r.getMessage()) for r in caplog.records]
    lines = [m for m in lines if m]
    assert len(lines) >= 5
    assert [int(m.group(2)) for m in lines] == list(range(1, len(lines) + 1))
    for k, m in enumerate(lines):
        assert "connect failed" in m.group(1)
        step = min(cap, base * 2**k)
        assert 0.5 * step - 0.005 <= float(m.group(3)) <= step + 0.005  # 2-decimal rounding
    assert not any(type(x) in (Tick, Progress) for x in out)  # never Progress while down
    reconnects = [h for h in out if type(h) is Health and h.metric == "reconnects"]
    assert reconnects and sum(h.value for h in reconnects) <= 2 * len(lines)
    assert cpu < 0.5 * elapsed  # loose: an idle worker, not a busy loop


def test_refused_handshakes_then_recovery_starts_streaming(caplog):
    caplog.set_level(logging.WARNING, logger="pairstream.binance")
    with FakeBinance(faults=Faults(refuse=True)) as fake:
        src = BinanceSource(["BTCUSDT", "ETHUSDT"], "aggTrade", fake.ws_url, fake.rest_url,
                            backoff_base=0.01, backoff_cap=0.05)
        part = src.build_part("binance", "conn-0", None)
        deadline = time.monotonic() + 30
        while fake.stats.refused < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert fake.stats.refused >= 3
        fake.faults.refuse = False
        got: list = []
        while not any(type(x) is Tick for x in got) and time.monotonic() < deadline:
            got += part.next_batch()
            time.sleep(0.005)
        part.close()
    assert any(type(x) is Tick for x in got)
    msgs = [r.getMessage() for r in caplog.records]
    assert any("connect failed: HTTP 503" in m for m in msgs)
