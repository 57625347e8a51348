"""pairstream main dataflow — run with ``python -m bytewax.run flows.pairs``.

    source (Binance live / replay) ─► ticks ───────────────────────────────► ticks table
                                   └► health ──────────────────────────────► feed_health table

Wiring only: the maths lives in plain modules, the I/O in ``connectors``.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source

from connectors.questdb_sink import QuestDBSink, check_reachable, ensure_tables, to_questdb
from connectors.replay import ReplaySource
from flows.config import Config
from flows.records import Health, Tick
from flows.startup import checked, load_config, setup_logging


def make_source(cfg: Config) -> Source[Any]:
    """The configured source: live Binance or a replay of files."""
    src = cfg.source
    if src.kind == "replay":
        return ReplaySource(
            src.paths, cfg.symbols, speed=src.speed, rebase_to_now=src.rebase_to_now
        )
    from connectors.binance import BinanceSource

    return BinanceSource(
        list(cfg.symbols), stream=src.stream, ws_url=src.ws_url, rest_url=src.rest_url
    )


def make_sink(cfg: Config) -> QuestDBSink:
    q = cfg.questdb
    return QuestDBSink(
        q.conf,
        flush_rows=q.flush_rows,
        flush_interval=q.flush_interval_s,
        buffer_rows=q.buffer_rows,
    )


def build(cfg: Config) -> Dataflow:
    """The whole pipeline for one configuration."""
    flow = Dataflow("pairstream")
    events = op.input("source", flow, make_source(cfg))
    ticks = op.filter("ticks", events, lambda e: isinstance(e, Tick))
    health = op.filter("health", events, lambda e: isinstance(e, Health))

    sink = make_sink(cfg)
    to_questdb("ticks_out", ticks, sink)
    to_questdb("health_out", health, sink)
    return flow


def prepare() -> Config:
    """Start-up: logging, configuration, QuestDB reachable, tables created — or one-line exit."""
    setup_logging()
    cfg = load_config()
    checked(lambda: check_reachable(cfg.questdb.conf))
    checked(lambda: ensure_tables(cfg.questdb.conf))
    return cfg


def __getattr__(name: str) -> Dataflow:
    # `python -m bytewax.run flows.pairs` looks up `flow`; building it lazily lets other code
    # (the CLI, tests) import this module and call `build(cfg)` without the start-up checks.
    if name == "flow":
        return checked(lambda: build(prepare()))
    raise AttributeError(name)
