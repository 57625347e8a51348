"""Bytewax sink posting the flow's alert events to Grafana as annotations, never in the way.

Each FIRING/RESOLVED :class:`AlertEvent` becomes one annotation on the Pair monitor dashboard
(tags: ``pairstream``, rule id, pair, tf, severity). A background thread per worker posts them
through grafana-client; ``write_batch`` only puts events on a bounded queue, so a slow or dead
Grafana never slows or stops the flow: when the queue is full the event is dropped and counted.
A post that fails is counted and not retried (the event stays in the ``alerts`` table; a retry
after a timeout could post it twice). At the end the sink waits up to ``drain_timeout`` for the
queue to empty, but not at all while a request has been hanging for more than ``stall_after``:
what is left then is counted as dropped. One summary line is logged at close.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.grafana import PAIR_DASHBOARD, Credential, connect, credential_from_env
from pairstream.config import GrafanaConfig
from pairstream.records import AlertEvent

log = logging.getLogger("pairstream.grafana")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
_STOP = object()
_LOG_EVERY = 10.0  # seconds between two warnings about the same kind of trouble


def annotation(ev: AlertEvent, dashboard_uid: str = PAIR_DASHBOARD) -> dict[str, Any]:
    """The keyword arguments of ``Annotations.add_annotation`` for one event (a point in time)."""
    ms = (ev.ts - _EPOCH) // _MS
    return {
        "dashboard_uid": dashboard_uid,
        "time_from": ms,
        "time_to": ms,
        "tags": ["pairstream", ev.rule_id, ev.pair, ev.tf, ev.severity],
        "text": ev.message,
    }


class _AnnotationPartition(StatelessSinkPartition[AlertEvent]):
    def __init__(
        self,
        url: str,
        credential: Credential,
        dashboard_uid: str,
        queue_size: int,
        timeout: float,
        drain_timeout: float,
        stall_after: float,
    ) -> None:
        self._url = url
        self._api = connect(url, credential, timeout)
        self._dashboard_uid = dashboard_uid
        self._queue: queue.Queue = queue.Queue(queue_size)
        self._drain_timeout = drain_timeout
        self._stall_after = stall_after
        self._cond = threading.Condition()
        self._inflight_since: Optional[float] = None
        self._closed = False
        self._pending = 0  # queued or being posted
        self.posted = self.failed = self.dropped_full = self.dropped_exit = 0
        self._warned: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="grafana-annotations", daemon=True)
        self._thread.start()

    # -- the worker thread: never blocks -----------------------------------------------------

    def write_batch(self, items: list[AlertEvent]) -> None:
        for ev in items:
            with self._cond:
                try:
                    self._queue.put_nowait(ev)
                    self._pending += 1
                    continue
                except queue.Full:
                    self.dropped_full += 1
            self._warn(
                "full",
                "grafana annotations: queue full, dropping (%d so far): Grafana at %s is "
                "slow or down",
                self.dropped_full,
                self._url,
            )

    def close(self) -> None:
        deadline = time.monotonic() + self._drain_timeout
        with self._cond:
            while self._pending and time.monotonic() < deadline and not self._stalled():
                self._cond.wait(0.05)
            self._closed = True
            self.dropped_exit = self._pending
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the thread is stuck in a request; it is a daemon and ends with the process
        dropped = self.dropped_full + self.dropped_exit
        log.log(
            logging.WARNING if dropped or self.failed else logging.INFO,
            "grafana annotations: %d posted, %d failed, %d dropped "
            "(%d queue full, %d unsent at exit)",
            self.posted,
            self.failed,
            dropped,
            self.dropped_full,
            self.dropped_exit,
        )

    # -- the poster thread -------------------------------------------------------------------

    def _stalled(self) -> bool:
        since = self._inflight_since
        return since is not None and time.monotonic() - since > self._stall_after

    def _run(self) -> None:
        while True:
            ev = self._queue.get()
            if ev is _STOP:
                return
            with self._cond:
                if self._closed:
                    return
                self._inflight_since = time.monotonic()
            ok = True
            try:
                self._api.annotations.add_annotation(**annotation(ev, self._dashboard_uid))
            except Exception as e:  # noqa: BLE001 - any failure is counted, the flow goes on
                ok = False
                reason = " ".join(str(getattr(e, "message", e) or type(e).__name__).split())
                self._warn("fail", "grafana annotations: post to %s failed: %s", self._url,
                           reason[:200])  # fmt: skip
            with self._cond:
                if self._closed:
                    return  # already counted as unsent by close()
                self._inflight_since = None
                self._pending -= 1
                if ok:
                    self.posted += 1
                else:
                    self.failed += 1
                self._cond.notify_all()

    def _warn(self, kind: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._warned.get(kind, -_LOG_EVERY) >= _LOG_EVERY:
            self._warned[kind] = now
            log.warning(msg, *args)


class GrafanaAnnotationSink(DynamicSink[AlertEvent]):
    """Post alert events to Grafana as annotations, one background poster per worker."""

    def __init__(
        self,
        url: str,
        credential: Credential,
        *,
        dashboard_uid: str = PAIR_DASHBOARD,
        queue_size: int = 1000,
        timeout: float = 5.0,
        drain_timeout: float = 10.0,
        stall_after: float = 2.0,
    ) -> None:
        self.url = url
        self._credential = credential
        self.dashboard_uid = dashboard_uid
        self.queue_size = queue_size
        self.timeout = timeout
        self.drain_timeout = drain_timeout
        self.stall_after = stall_after

    @classmethod
    def from_config(cls, g: GrafanaConfig) -> GrafanaAnnotationSink:
        """From ``[grafana]``; credentials from the environment (a one-line error if none)."""
        return cls(g.url, credential_from_env(), queue_size=g.annotation_queue,
                   timeout=g.timeout_s)  # fmt: skip

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> _AnnotationPartition:
        return _AnnotationPartition(
            self.url,
            self._credential,
            self.dashboard_uid,
            self.queue_size,
            self.timeout,
            self.drain_timeout,
            self.stall_after,
        )
