"""Records: frozen slotted dataclasses whose fast ``__init__`` behaves as the generated one."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from datetime import datetime, timezone

import numpy as np
import pytest

from pairstream import records

RECORDS = [
    c
    for c in vars(records).values()
    if isinstance(c, type) and c.__module__ == records.__name__ and dataclasses.is_dataclass(c)
]
TS = datetime(2024, 7, 19, tzinfo=timezone.utc)


def values(cls: type) -> dict:
    """One distinct value per field (arrays for the columnar TickBatch)."""
    out = {}
    for i, f in enumerate(dataclasses.fields(cls)):
        out[f.name] = TS if f.name == "ts" else np.arange(3) if cls is records.TickBatch else i
    return out


def reference(cls: type) -> type:
    """The same fields through the plain ``dataclass(frozen=True, slots=True)`` decorator."""
    spec = [
        (f.name, f.type, dataclasses.field(default=f.default))
        if f.default is not dataclasses.MISSING
        else (f.name, f.type)
        for f in dataclasses.fields(cls)
    ]
    return dataclasses.make_dataclass(cls.__name__, spec, frozen=True, slots=True)


def test_every_record_is_a_frozen_slotted_dataclass():
    assert len(RECORDS) >= 12
    for cls in RECORDS:
        assert cls.__dataclass_params__.frozen and "__slots__" in vars(cls), cls
        assert not hasattr(cls(**values(cls)), "__dict__")


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_init_takes_what_the_dataclass_init_takes(cls):
    ref = reference(cls)
    assert list(inspect.signature(cls).parameters.values()) == list(
        inspect.signature(ref).parameters.values()
    )
    v = values(cls)
    names = list(v)
    by_position, by_name = cls(*v.values()), cls(**v)
    for rec in (by_position, by_name):
        assert [getattr(rec, n) is v[n] for n in names] == [True] * len(names)
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    short = cls(**{n: v[n] for n in required})  # defaults filled in as the dataclass does
    expected = ref(**{n: v[n] for n in required})
    assert [getattr(short, n) is getattr(expected, n) for n in names] == [True] * len(names)
    with pytest.raises(TypeError):
        cls(*list(v.values())[:-1] if len(required) == len(names) else [])
    with pytest.raises(TypeError):
        cls(**v, unknown=1)
    with pytest.raises((dataclasses.FrozenInstanceError, TypeError)):  # TypeError: CPython 3.11
        setattr(by_name, names[0], v[names[0]])


@pytest.mark.parametrize("cls", [c for c in RECORDS if c is not records.TickBatch])
def test_equal_hashable_and_picklable(cls):
    a, b = cls(**values(cls)), cls(**values(cls))
    assert a == b and hash(a) == hash(b)
    assert pickle.loads(pickle.dumps(a)) == a
    assert a != dataclasses.replace(a, ts=datetime(2000, 1, 1, tzinfo=timezone.utc))
