"""pairstream.jit: kernels use numba's cache, or compile without it where none can be written."""

from __future__ import annotations

import logging

import numpy as np

from pairstream.jit import compiled


def test_a_function_in_a_source_file_compiles_with_the_cache(caplog):
    def total(a):
        s = 0.0
        for v in a:
            s += v
        return s

    with caplog.at_level(logging.WARNING, logger="pairstream.jit"):
        fn = compiled(total)
    assert fn(np.arange(4.0)) == 6.0
    assert caplog.text == ""  # numba found a cache location: no fallback


def test_without_a_cache_location_it_still_compiles_and_says_how_to_keep_it(caplog):
    space: dict = {}
    exec("def total(a):\n    s = 0.0\n    for v in a:\n        s += v\n    return s\n", space)
    # code with no source file: numba has nowhere to keep its cache, as in a read-only install
    with caplog.at_level(logging.WARNING, logger="pairstream.jit"):
        fn = compiled(space["total"])
    assert fn(np.arange(4.0)) == 6.0
    assert "NUMBA_CACHE_DIR" in caplog.text and "no locator available" in caplog.text
