"""Start-up checks shared by the flow and the CLI: every user-caused problem ends in one line.

Bad configuration or alert rule, missing replay file, QuestDB unreachable: print
``pairstream: error: <what and why>`` to stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn, Optional, TypeVar

from connectors.binance_info import SymbolError, verify_symbols
from connectors.export import ExportError
from connectors.funding_files import FundingFileError
from connectors.grafana_errors import GrafanaError
from connectors.questdb_http import QuestDBError
from connectors.questdb_server import LauncherError
from connectors.replay import ReplayError
from pairstream.backtest import BacktestError
from pairstream.config import Config, ConfigError, ScanError, load

T = TypeVar("T")
USER_ERRORS = (
    ConfigError, QuestDBError, ReplayError, FundingFileError, LauncherError, ExportError,
    BacktestError, SymbolError, GrafanaError, ScanError,
)  # fmt: skip


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line and exit; the line is all the user needs."""
    print(f"pairstream: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def checked(fn: Callable[[], T]) -> T:
    """Run ``fn``; a user-caused error becomes the one-line exit of :func:`fail`."""
    try:
        return fn()
    except USER_ERRORS as e:
        fail(str(e))


def check_source(cfg: Config) -> None:
    """Live source: the API key a ``trade`` stream needs, and every symbol listed by Binance.

    Raises ConfigError / SymbolError (one line each); a replay needs neither (offline).
    """
    src = cfg.source
    if src.kind != "binance":
        return
    if src.stream == "trade" and src.api_key() is None:
        raise ConfigError(
            f"source.stream: 'trade' backfills over /fapi/v1/historicalTrades, which needs an "
            f"API key: set the environment variable {src.api_key_env} (source.api_key_env)")
    verify_symbols(src.rest_url, cfg.symbols)


def tune_gc() -> None:
    """Run CPython's young-generation collector every 100,000 allocations instead of 700.

    The flow allocates millions of short-lived objects (parsed fields, rows, records) and keeps
    few; with the default threshold the collector ran ~1,700 times per 1M replayed ticks, ~10% of
    the flow's CPU (bench/README.md). Reference cycles are still collected, just in larger
    batches.
    """
    gc.set_threshold(100_000, 10, 10)


def freeze_heap() -> None:
    """Move everything start-up made (modules, numba/LLVM, pandas...) out of the collector's reach.

    Those objects live as long as the process; freezing them spares every full collection and
    the interpreter's collection at exit from walking them: a 1M-tick replay exited 0.4-0.8 s
    after its last row was written, 0.12-0.23 s frozen (bench/README.md).
    """
    gc.freeze()


def warm_kernels() -> None:
    """Load the numba-compiled kernels now, not when the first block or bar arrives.

    From numba's on-disk cache (``__pycache__`` next to the modules) this takes ~0.3 s; the
    first start of a fresh checkout compiles them (~10 s on the 2-core machine) and fills the
    cache. Done before the source starts, it stays off the first bar's latency.
    """
    import numpy as np

    from connectors.trade_block import trade_columns
    from pairstream.estimators import adf_pvalue, ols_beta_alpha, pearson, zscore

    w = np.linspace(1.0, 2.0, 12) ** 2
    ols_beta_alpha(w, w[::-1].copy())
    pearson(w, w)
    zscore(w, 1.0)
    adf_pvalue(w)
    trade_columns(b"")


def setup_logging() -> None:
    level = os.environ.get("PAIRSTREAM_LOG", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def load_config(path: Optional[str | os.PathLike] = None) -> Config:
    """The configuration (``path``, else ``PAIRSTREAM_CONFIG``, else ``pairstream.toml``)."""
    return checked(lambda: load(path))
