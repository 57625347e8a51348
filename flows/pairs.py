"""pairstream main dataflow — run with ``python -m bytewax.run flows.pairs``.

    source (Binance live / replay) ─┬─► ticks ─────────────────────────────────► ticks
                                    ├─► marks ─────────────────────────────────► marks
                                    │   (event time is progress; settlements ─► signals)
                                    ├─► progress ─┐
                                    │   ticks ────┴► bars 1s ► 1m ► 5m ────────► bars
                                    ├─► kline bars ► roll-up ──────────────────► bars
                                    └─► health ────────────────────────────────► feed_health
    bars ► align per pair+tf ► pair analytics per preset ──────────────────────► pair_analytics
               (replay funding files) ─┐     ├─► signals, paper PnL, funding ──► signals
                                       └─────┘
                                             └─► alert rules (default preset) ─► alerts
                                                   └─ [grafana] annotations ───► Grafana
    bars ► [scan] universe, every `every` of bar time ► pairs over the workers ► pair_scan

Wiring only: the maths lives in plain modules, the I/O in ``connectors``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source

from connectors.questdb_sink import QuestDBSink, check_reachable, ensure_tables, to_questdb
from connectors.replay import ReplaySource
from connectors.store_resume import Starter, stored_history
from flows.alerting import alerts
from flows.align import align_pairs
from flows.analytics import pair_analytics
from flows.bars import bars, rollup_bars
from flows.funding import funding_from_marks
from flows.scan import pair_scan
from flows.signals import signals
from flows.startup import (
    check_source,
    checked,
    freeze_heap,
    load_config,
    setup_logging,
    tune_gc,
    warm_kernels,
)
from pairstream.alerts import load_rules
from pairstream.config import DEFAULT_PRESET, Config
from pairstream.records import Bar, Health, Mark, Progress, Tick, TickBatch


def make_source(cfg: Config, starter: Optional[Starter] = None) -> Source[Any]:
    """The configured source: live Binance (resuming as ``starter`` plans) or a replay."""
    src = cfg.source
    if src.kind == "replay":
        return ReplaySource(
            src.paths, cfg.symbols, speed=src.speed, rebase_to_now=src.rebase_to_now
        )
    from connectors.binance import BinanceSource

    return BinanceSource(
        list(cfg.symbols),
        stream=src.stream,
        ws_url=src.ws_url,
        rest_url=src.rest_url,
        api_key=src.api_key(),
        high_water=src.high_water,
        until=src.until_dt,
        marks=src.marks,
        # Between trades, let the feed's exchange clock run on for half the lateness: bars close
        # without waiting for the next trade, and the other half still absorbs the (ms-scale)
        # reordering between the streams of one connection.
        progress_horizon=cfg.bars.lateness_td.total_seconds() / 2,
        progress_interval=0.05,
        starter=starter,
    )


def make_sink(cfg: Config) -> QuestDBSink:
    q = cfg.questdb
    # Live (and paced replays), a closed bar is committed the moment it exists; an unpaced
    # replay is a backfill that nobody watches bar by bar, so its bar-rate tables are committed
    # at most once a second: each commit of 1s/1m/5m rows lands partly in the past (a 5m bar is
    # stamped with its start), and QuestDB's out-of-order merges, not the rows, cost its CPU
    # (bench/README.md: 7.3 s at every 250 ms, 5.5 s at every second, per 1M-tick replay).
    backfill = cfg.source.kind == "replay" and not cfg.source.speed
    return QuestDBSink(
        q.conf,
        flush_rows=q.flush_rows,
        flush_interval=q.flush_interval_s,
        derived_flush_interval=max(q.flush_interval_s, 1.0) if backfill else 0.0,
        buffer_rows=q.buffer_rows,
        dead_letter=q.dead_letter or None,
    )


def _only(*types: type) -> Callable[[list[Any]], list[Any]]:
    """Keep the records of exactly ``types`` (records are final classes), in order."""
    wanted = frozenset(types)
    return lambda batch: [e for e in batch if type(e) in wanted]


def build(cfg: Config) -> Dataflow:
    """The whole pipeline for one configuration."""
    rules = load_rules(cfg)
    # Live: every start resumes from the store, warms up from the exchange, then goes live.
    starter = Starter(cfg) if cfg.source.kind == "binance" else None
    seed = starter.symbol if starter is not None else None
    source = make_source(cfg, starter)
    flow = Dataflow("pairstream")
    events = op.input("source", flow, source)
    # Batch filters (one Python call per source batch, not per tick): same records, same order.
    ticks = op.flat_map_batch("ticks", events, _only(Tick, TickBatch))
    trade_flow = op.flat_map_batch("trade_flow", events, _only(Tick, TickBatch, Progress))
    health = op.flat_map_batch("health", events, _only(Health))
    marks = op.flat_map_batch("marks", events, _only(Mark))

    built = bars("bars", trade_flow, cfg.timeframes, cfg.bars.lateness_td, seed)
    all_bars = built.bars
    for tf in getattr(source, "bar_timeframes", ()):  # offline OHLC mode: kline files
        klines = op.filter(
            f"klines_{tf}", events, lambda e, tf=tf: isinstance(e, Bar) and e.tf == tf
        )
        all_bars = op.merge(
            f"bars_with_{tf}", all_bars, rollup_bars(f"rollup_{tf}", klines, tf, cfg.timeframes)
        )

    pair_bars = align_pairs("align", all_bars, list(cfg.pairs), cfg.timeframes)
    history = stored_history(cfg.questdb.conf)  # changed settings: state from stored bars
    analytics = pair_analytics("analytics", pair_bars, cfg, history)  # one row per preset
    positions = signals(
        "signals",
        analytics,
        cfg,
        funding=getattr(source, "funding", None),  # replay: funding files
        funding_events=funding_from_marks("settlements", marks),  # live: the mark stream
        history=history,
    )
    base = op.filter("default_preset", analytics, lambda a: a.preset == DEFAULT_PRESET)
    events_out = alerts("alerts", base, rules)

    if starter is not None:  # replayed history rebuilds state; stored rows stay as they are
        analytics = op.filter("new_analytics", analytics, starter.unwritten)
        positions = op.filter("new_signals", positions, starter.unwritten)
        events_out = op.filter("new_alerts", events_out, starter.unwritten)

    sink = make_sink(cfg)
    to_questdb("ticks_out", ticks, sink)
    to_questdb("bars_out", all_bars, sink)
    to_questdb("analytics_out", analytics, sink)
    to_questdb("signals_out", positions, sink)
    if cfg.scan.symbols:  # the pair scanner over the flow's own bars, on bar time
        to_questdb("scan_out", pair_scan("scan", all_bars, cfg.scan), sink)
    to_questdb("alerts_out", events_out, sink)
    to_questdb("marks_out", marks, sink)
    if cfg.grafana.annotations:  # also on Grafana's panels; a slow Grafana never holds the flow
        from connectors.grafana_annotations import GrafanaAnnotationSink  # its HTTP stack: 0.5 s

        op.output("annotations_out", events_out, GrafanaAnnotationSink.from_config(cfg.grafana))
    to_questdb("health_out", op.merge("all_health", health, built.late), sink)
    return flow


def prepare() -> Config:
    """Start-up: logging, configuration, QuestDB reachable, tables created or checked — or a
    one-line exit."""
    setup_logging()
    tune_gc()
    cfg = load_config()
    checked(lambda: load_rules(cfg))  # a bad alert rule stops here, before any I/O
    checked(lambda: check_source(cfg))  # API key, symbols listed by Binance (live only)
    checked(lambda: check_reachable(cfg.questdb.conf))
    checked(lambda: ensure_tables(cfg.questdb.conf))
    warm_kernels()
    freeze_heap()
    return cfg


def __getattr__(name: str) -> Dataflow:
    # `python -m bytewax.run flows.pairs` looks up `flow`; building it lazily lets other code
    # (the CLI, tests) import this module and call `build(cfg)` without the start-up checks.
    if name == "flow":
        return checked(lambda: build(prepare()))
    raise AttributeError(name)
