"""Ending the flow process with one line: Ctrl-C, SIGTERM, or a background task that failed.

Bytewax 0.21 turns SIGINT into a Rust panic plus a Python traceback (``BytewaxRuntimeError:
signal received``), SIGTERM kills the process with rows still in the sink's buffers, and an
exception raised in a partition ends the same way as SIGINT. The flow process installs
:func:`install` (``flows/__init__.py`` does it for ``python -m bytewax.run``; ``pairstream
replay`` calls it); from then on a signal, or :func:`fail` from any thread, stops like this:

1. every registered sink partition stops taking rows and writes what it holds (bounded);
2. one line on stderr: ``pairstream: stopped`` (``...; state saved in DIR`` with Bytewax
   recovery), or ``pairstream: error: <what>`` for a failure;
3. the process ends with ``os._exit``: 130 after SIGINT, 0 after SIGTERM, 1 after a failure.

Ending without unwinding Bytewax is safe: its recovery store is SQLite, committed at each
snapshot, and a ``kill -9`` at any point resumes correctly (tests/flows/test_recovery.py); the
rows written at the stop belong to the epoch after the last snapshot and are re-written,
harmlessly (DEDUP keys), on resume. Without :func:`install` (tests, notebooks) nothing
changes: :func:`fail` returns False and the caller raises as before.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import NoReturn, Optional, Protocol

STOP_TIMEOUT = 15.0  # seconds the partitions get to write what they hold
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 0}


class Flushable(Protocol):
    def stop_and_flush(self, deadline: float) -> int:
        """Stop taking rows, write those held until ``deadline``; rows left unwritten."""
        ...


_parts: weakref.WeakSet = weakref.WeakSet()
_lock = threading.RLock()  # re-entrant: a signal handler may interrupt a holder
_state: dict = {"installed": False, "recovery": None, "stopping": False}


def register(part: Flushable) -> None:
    """A sink partition whose rows must be written before the process ends."""
    with _lock:
        _parts.add(part)


def unregister(part: Flushable) -> None:
    with _lock:
        _parts.discard(part)


def installed() -> bool:
    return bool(_state["installed"])


def install(recovery: Optional[str | os.PathLike] = None) -> None:
    """Handle SIGINT/SIGTERM with the one-line stop (main thread only)."""
    _state["installed"] = True
    _state["recovery"] = str(Path(recovery).resolve()) if recovery else None
    for s in EXIT_CODES:
        signal.signal(s, _on_signal)


def install_when_run_by_bytewax() -> None:
    """:func:`install` in the process ``python -m bytewax.run`` started, nowhere else.

    Called when ``flows`` is first imported, i.e. before the heavy imports of the flow
    module, so a Ctrl-C during start-up is one line too. The recovery directory is read the
    way ``bytewax.run`` reads it (``-r``/``--recovery-directory`` or its environment variable).
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if getattr(spec, "name", None) != "bytewax.run" or installed():
        return
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("-r", "--recovery-directory", default=None)
    known, _ = ap.parse_known_args(sys.argv[1:])
    install(known.recovery_directory or os.environ.get("BYTEWAX_RECOVERY_DIRECTORY"))


def fail(message: str) -> bool:
    """Stop the process with ``pairstream: error: <message>`` (exit 1), from any thread.

    Returns False, doing nothing, when :func:`install` was not called: the caller then raises
    the error into Bytewax as it would anyway.
    """
    if not installed():
        return False
    _begin(1, f"pairstream: error: {' '.join(str(message).split())}")
    return True


def fail_or_raise(message: str, error: BaseException) -> NoReturn:
    """For a worker-thread call that found a fatal error: :func:`fail` and wait for the end
    (raising into Bytewax would print its panic beside the one line), else raise ``error``."""
    if fail(message):
        while True:
            time.sleep(3600)
    raise error


def _on_signal(signum: int, _frame: object) -> None:
    line = "pairstream: stopped"
    if _state["recovery"]:
        line += f"; state saved in {_state['recovery']}"
    _begin(EXIT_CODES.get(signum, 130), line)


def _begin(code: int, line: str) -> None:
    """Start the stop once (later signals and failures are ignored); returns at once.

    A thread does the work: the signal handler runs on Bytewax's worker thread, which may be
    inside a sink call; it must return so the partitions' own threads can finish.
    """
    with _lock:
        if _state["stopping"]:
            return
        _state["stopping"] = True
        parts = list(_parts)
    threading.Thread(target=_stop, args=(parts, code, line), name="pairstream-stop").start()


def _stop(parts: list[Flushable], code: int, line: str) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT
    left = 0
    for p in parts:
        try:
            left += p.stop_and_flush(deadline)
        except Exception:  # noqa: BLE001 - a broken partition must not keep the process alive
            left += 1
    if left:
        line += f" ({left} rows held for QuestDB were not written)"
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream
            pass
    os.write(2, (line + "\n").encode())
    os._exit(code)
