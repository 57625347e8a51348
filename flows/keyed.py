"""Keyed state steps that cost one Python call per key and batch, not several per item.

``op.key_on`` → ``op.stateful_flat_map`` → ``op.key_rm`` makes Bytewax call Python about five
times per item (the key function and its shim, ``on_item``, the mapper, the unkey shim), and
route every item on its own. Here the caller groups a whole upstream batch by key in one call
(``(key, group)`` pairs, each key's items in arrival order), :func:`stateful_groups` hands each
key's groups to ``step`` in one ``on_batch`` call, and :func:`unkey` strips the keys of a batch
in one call. Each key's state sees the same items in the same order as item by item, so the
results are the same.

The state step sits at the step id ``op.stateful_flat_map`` used (``<step_id>.stateful.
stateful_batch``) and its snapshot is the state itself, as there: recovery snapshots taken by
the per-item version resume here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any, Generic, Optional, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream, StatefulBatchLogic

S = TypeVar("S")
G = TypeVar("G")
W = TypeVar("W")
T = TypeVar("T")
V = TypeVar("V")

# step(state or None, one group of a key, out) → the state; appends what it emits to ``out``
GroupStep = Callable[[Optional[S], G, list], S]


class _GroupLogic(StatefulBatchLogic[G, W, S], Generic[G, W, S]):
    __slots__ = ("state", "step")

    def __init__(self, step: GroupStep, state: Optional[S]) -> None:
        self.step = step
        self.state = state

    def on_batch(self, values: list[G]) -> tuple[Iterable[W], bool]:
        out: list = []
        step, state = self.step, self.state
        for group in values:
            state = step(state, group, out)
        self.state = state
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> S:
        assert self.state is not None
        return copy.deepcopy(self.state)


@operator
def _stateful(step_id: str, up: KeyedStream[G], builder: Callable) -> KeyedStream[W]:
    return op.stateful_batch("stateful_batch", up, builder)


@operator
def stateful_groups(step_id: str, up: KeyedStream[G], step: GroupStep) -> KeyedStream[W]:
    """Per key, ``state = step(state, group, out)`` for each group in order (state None at
    first); ``out`` collects the key's emitted values. Step id as ``stateful_flat_map``'s."""
    return _stateful("stateful", up, lambda resume: _GroupLogic(step, resume))


def grouped(entries: Iterable[tuple[str, V]]) -> list[tuple[str, list[V]]]:
    """``(key, value)`` pairs of a batch → one ``(key, [values])`` per key: keys in first-seen
    order, each key's values in arrival order (what :func:`stateful_groups` takes)."""
    groups: dict[str, list[V]] = {}
    for k, v in entries:
        g = groups.get(k)
        if g is None:
            groups[k] = [v]
        else:
            g.append(v)
    return list(groups.items())


def tagged_groups(entries: Iterable[tuple[str, T, V]]) -> list[tuple[str, tuple[T, list[V]]]]:
    """As :func:`grouped` for ``(key, tag, value)``: each key's group carries the tag its first
    entry had (what the key stands for: a pair, a preset), ``(key, (tag, [values]))``."""
    groups: dict[str, tuple[T, list[V]]] = {}
    for k, tag, v in entries:
        g = groups.get(k)
        if g is None:
            groups[k] = (tag, [v])
        else:
            g[1].append(v)
    return list(groups.items())


def _values(batch: list[tuple[str, Any]]) -> list[Any]:
    return [v for _, v in batch]


def unkey(step_id: str, up: KeyedStream[W]) -> Stream[W]:
    """``op.key_rm`` in one call per batch."""
    return op.flat_map_batch(step_id, up, _values)
