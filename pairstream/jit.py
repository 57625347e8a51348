"""numba's ``njit`` with its on-disk cache where one can be written, and without it elsewhere.

The compiled kernels (frame-block parser, window statistics, ADF) take ~10 s to compile and
~0.3 s to load from numba's cache (``__pycache__`` next to the module, else the user's cache
directory, or ``NUMBA_CACHE_DIR``). Where none is writable, numba refuses ``cache=True`` at
import; the kernels then compile in every process instead, with a warning saying how to avoid it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from numba import njit

log = logging.getLogger("pairstream.jit")


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``njit(cache=True, nogil=True)``, falling back to an uncached compile."""
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError as e:  # "cannot cache function ...: no locator available for file ..."
        log.warning(
            "%s: compiled without a cache (%s); set NUMBA_CACHE_DIR to a writable directory "
            "to keep compiled code between starts", fn.__qualname__, e,
        )  # fmt: skip
        return njit(nogil=True)(fn)
