"""The align_pairs operator fans shared symbols out and equals PairAligner per pair."""

from __future__ import annotations

import random

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.align import align_pairs
from pairstream.align import PairAligner
from pairstream.config import PairConfig
from pairstream.records import PairBar
from tests.pairstream.test_align import bar  # noqa: F401


def test_align_pairs_operator_with_shared_symbols() -> None:
    pairs = [PairConfig("BTC", "ETH"), PairConfig("ETH", "SOL"), PairConfig("BTC", "SOL")]
    rng = random.Random(7)
    per_symbol = {
        s: [bar(s, m, base + rng.random(), tf) for tf in ("1m", "5m") for m in range(0, 30, 1)]
        for s, base in (("BTC", 60000.0), ("ETH", 3400.0), ("SOL", 140.0), ("XRP", 0.5))
    }
    labels = [s for s, bs in per_symbol.items() for _ in bs]
    rng.shuffle(labels)
    iters = {s: iter(bs) for s, bs in per_symbol.items()}
    stream = [next(iters[s]) for s in labels]

    out: list[PairBar] = []
    flow = Dataflow("align_test")
    bars = op.input("in", flow, TestingSource(stream))
    op.output("out", align_pairs("align", bars, pairs, ["1m", "5m"]), TestingSink(out))
    run_main(flow)

    for p in pairs:
        for tf in ("1m", "5m"):
            got = [pb for pb in out if pb.pair == p.id and pb.tf == tf]
            al = PairAligner(p.y, p.x, tf, p.id)
            want = [
                pb for b in per_symbol[p.y] + per_symbol[p.x] if b.tf == tf for pb in al.push(b)
            ]
            assert got == want and len(got) == 30
    assert {pb.pair for pb in out} == {p.id for p in pairs}  # XRP is in no pair
