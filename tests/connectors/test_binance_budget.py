"""RestBudget on a controlled clock: sliding-minute weight, server header, pauses, FIFO, slots."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from connectors.binance_budget import RestBudget
from connectors.binance_rest import BinanceRest, request_weight
from tests.fakes.exchange import FakeBinance, Faults


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def grant(b: RestBudget, weight: int) -> float:
    """Queue one waiter and try it once (0.0: granted); leaves nobody queued."""
    from connectors.binance_budget import _Waiter

    w = _Waiter(weight, lambda: None)
    with b._lock:
        b._queue.append(w)
        wait = b._try(w)
        if wait:
            b._queue.remove(w)
    return wait


def test_sliding_minute_never_exceeds_the_share_of_the_limit():
    clock = Clock()
    b = RestBudget(2400, share=0.9, max_concurrent=1000, clock=clock)  # cap 2160 per 60 s
    for _ in range(108):  # 108 aggTrades pages = 2160
        assert grant(b, 20) == 0.0
        b.release()
        clock.t += 0.1
    assert b.used() == 2160
    wait = grant(b, 20)
    assert wait == pytest.approx(60 - 108 * 0.1)  # when the first grant leaves the window
    clock.t += wait
    assert grant(b, 20) == 0.0
    # Any 60 s interval holds at most the cap, whatever the alignment of Binance's minutes.
    times = [at for at, _ in b._log]
    assert all(sum(1 for t in times if s <= t < s + 60) * 20 <= 2160 for s in times)


def test_server_reported_weight_beyond_ours_counts_for_one_window():
    clock = Clock()
    b = RestBudget(2400, share=1.0, max_concurrent=10, clock=clock)
    assert grant(b, 20) == 0.0
    b.release({"X-MBX-USED-WEIGHT-1M": "2390"})  # someone else on the IP used 2370
    assert b.used() == 2390
    assert grant(b, 20) == pytest.approx(60.0)  # only the external weight's expiry frees room
    clock.t += 60.0
    assert grant(b, 20) == 0.0


def test_pause_holds_every_caller_and_concurrency_is_capped():
    clock = Clock()
    b = RestBudget(2400, max_concurrent=2, clock=clock)
    assert grant(b, 1) == 0.0 and grant(b, 1) == 0.0
    assert grant(b, 1) == float("inf")  # both slots busy: woken by a release
    b.release()
    assert grant(b, 1) == 0.0
    b.release()
    b.release()
    b.pause(7.0, "429")
    assert grant(b, 1) == pytest.approx(7.0)
    clock.t += 7.0
    assert grant(b, 1) == 0.0
    assert b.pauses == [(7.0, "429")]


def test_waiters_are_served_in_order_across_threads_and_loops():
    b = RestBudget(2400, max_concurrent=1)
    order: list[int] = []
    b.acquire_blocking(1)  # hold the only slot while the others queue up

    def worker(i: int) -> None:
        async def go() -> None:
            await b.acquire(1)
            order.append(i)
            b.release()
        asyncio.run(go())

    threads = []
    for i in range(5):
        t = threading.Thread(target=worker, args=(i,))
        t.start()
        threads.append(t)
        while len(b._queue) < i + 1:  # queued in this order
            threading.Event().wait(0.001)
    b.release()
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2, 3, 4]


def test_request_weights_and_page_limits():
    assert request_weight("/fapi/v1/aggTrades", {}) == 20
    assert request_weight("/fapi/v1/historicalTrades", {}) == 20
    assert [request_weight("/fapi/v1/klines", {"limit": n}) for n in (99, 100, 499, 500, 1000,
                                                                     1001, 1500)] \
        == [1, 2, 2, 5, 5, 10, 10]
    assert BinanceRest("http://127.0.0.1:9", "trade", limit=1000).limit == 500
    assert BinanceRest("http://127.0.0.1:9", "aggTrade").limit == 1000
    with pytest.raises(ValueError, match="no known request weight"):
        request_weight("/fapi/v1/unknown", {})


def test_rest_429_and_418_pause_the_shared_budget_then_succeed(caplog):
    """Retry-After of a 429 and the ban of a 418 become global pauses (not per request)."""
    faults = Faults(rest_429=2, rest_418=1, retry_after=1)
    budget = RestBudget()
    with FakeBinance(faults=faults) as fake:
        fake.advance(len(fake.frames))
        first = fake.aggs("BTCUSDT")[0].a
        rest = BinanceRest(fake.rest_url, "aggTrade", budget=budget, ban_backoff=1.5)
        other = BinanceRest(fake.rest_url, "aggTrade", budget=budget)
        rows = asyncio.run(rest.page("BTCUSDT", first))
        statuses = [st for _, st in fake.stats.rest]
        assert budget.pauses == [(1.0, "429"), (1.0, "429"), (1.5, "418")]
        budget.pause(30.0, "test")  # a pause set through one client holds the other one
        with pytest.raises(asyncio.TimeoutError):
            asyncio.run(asyncio.wait_for(other.page("ETHUSDT", 1), 0.3))
    assert statuses == [429, 429, 418, 200]
    assert [r["a"] for r in rows] == list(range(first, first + 1000))
    assert any(r.levelname == "ERROR" and "418" in r.getMessage() for r in caplog.records)


def test_blocking_get_gives_up_at_once_on_a_client_error_and_after_attempts_otherwise():
    from connectors.binance_rest import RestError
    from tests.fakes.exchange import refused_port

    with FakeBinance() as fake:
        rest = BinanceRest(fake.rest_url, "trade", budget=RestBudget())  # no API key sent
        with pytest.raises(RestError, match="HTTP 400"):
            rest.get_blocking("/fapi/v1/aggTrades", {"symbol": "NOPEUSDT", "limit": 10})
        assert [st for _, st in fake.stats.rest] == [400]
    down = BinanceRest(f"http://127.0.0.1:{refused_port()}", budget=RestBudget(),
                       retry_base=0.01)
    with pytest.raises(OSError):
        down.get_blocking("/fapi/v1/exchangeInfo", {}, attempts=3)
    assert down.budget.granted == 3  # three tries of weight 1, then the error


def test_a_stopped_feed_leaves_the_shared_queue():
    """A feed stopped while its backfills wait in the budget must not block the others."""
    from collections import deque

    from connectors.binance_ws import Feed

    budget = RestBudget(max_concurrent=1)
    budget.acquire_blocking(1)  # the only slot is busy: the feed's requests queue up
    with FakeBinance(manual=True) as fake:
        rest = BinanceRest(fake.rest_url, budget=budget)
        feed = Feed("q", ["BTCUSDT", "ETHUSDT"], "aggTrade", fake.ws_url, rest, deque(),
                    last_ids={"BTCUSDT": 1, "ETHUSDT": 1}, verify_timeout=0.0).start()
        deadline = time.monotonic() + 30
        while len(budget._queue) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(budget._queue) == 2  # both symbols' verification requests wait
        feed.stop()
    assert len(budget._queue) == 0
