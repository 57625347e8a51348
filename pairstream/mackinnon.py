"""MacKinnon's approximate p-values of the Dickey-Fuller tau statistic, constant-only case.

Owned here so the estimators need neither statsmodels' private tables nor scipy at run time.
The numbers are MacKinnon's response-surface estimates as statsmodels 0.14/0.15 ships them in
``statsmodels/tsa/adfvalues.py`` (``tau_star_c``, ``tau_min_c``, ``tau_max_c``,
``tau_c_smallp``, ``tau_c_largep`` with their ``small_scaling``/``large_scaling``), from

- J. G. MacKinnon (1994), "Approximate Asymptotic Distribution Functions for Unit-Root and
  Cointegration Tests", Journal of Business & Economic Statistics 12(2), 167-176 (the
  polynomial coefficients and the left-tail / rest cut-offs), and
- J. G. MacKinnon (2010), "Critical Values for Cointegration Tests", Queen's Economics
  Department Working Paper 1227 (the same tables' source as statsmodels cites them).

Row ``N - 1`` is for ``N`` series believed I(1) (``N = 1``: plain ADF). The coefficients are
stored exactly as statsmodels computes them (the printed values times the scaling, in floats),
and ``tests/pairstream/test_mackinnon.py`` holds them equal to statsmodels' arrays.
"""

from __future__ import annotations

import math

_SMALL_SCALING = (1.0, 1.0, 1e-2)
_LARGE_SCALING = (1.0, 1e-1, 1e-1, 1e-2)

TAU_STAR_C = (-1.61, -2.62, -3.13, -3.47, -3.78, -3.93)
TAU_MIN_C = (-18.83, -18.86, -23.48, -28.07, -25.96, -23.27)
TAU_MAX_C = (2.74, 0.92, 0.55, 0.61, 0.79, 1.0)

TAU_C_SMALLP = tuple(
    tuple(v * s for v, s in zip(row, _SMALL_SCALING))
    for row in (
        (2.1659, 1.4412, 3.8269),
        (2.92, 1.5012, 3.9796),
        (3.4699, 1.4856, 3.164),
        (3.9673, 1.4777, 2.6315),
        (4.5509, 1.5338, 2.9545),
        (5.1399, 1.6036, 3.4445),
    )
)
TAU_C_LARGEP = tuple(
    tuple(v * s for v, s in zip(row, _LARGE_SCALING))
    for row in (
        (1.7339, 9.3202, -1.2745, -1.0368),
        (2.1945, 6.4695, -2.9198, -4.2377),
        (2.5893, 4.5168, -3.6529, -5.0074),
        (3.0387, 4.5452, -3.3666, -4.1921),
        (3.5049, 5.2098, -2.9158, -3.3468),
        (3.9489, 5.8933, -2.5359, -2.721),
    )
)

_SQRT1_2 = math.sqrt(0.5)


def norm_cdf(x: float) -> float:
    """Standard normal CDF, computed as Cephes' ``ndtr`` (scipy) does, from libm's erf/erfc.

    ``0.5 + 0.5·erf(x/√2)`` near zero, ``erfc`` in the tails (no cancellation there).
    """
    z = x * _SQRT1_2
    if abs(z) < _SQRT1_2:
        return 0.5 + 0.5 * math.erf(z)
    y = 0.5 * math.erfc(abs(z))
    return 1.0 - y if z > 0 else y


def mackinnon_p_c(t: float, n: int = 1) -> float:
    """``statsmodels.tsa.adfvalues.mackinnonp(t, regression="c", N=n)``.

    The same tables, cut-offs and polynomial (Horner, highest power first, like ``np.polyval``
    of the reversed coefficients); the normal CDF is :func:`norm_cdf` (within a few ulps of
    scipy's ``ndtr``).
    """
    if t > TAU_MAX_C[n - 1]:
        return 1.0
    if t < TAU_MIN_C[n - 1]:
        return 0.0
    coef = TAU_C_SMALLP[n - 1] if t <= TAU_STAR_C[n - 1] else TAU_C_LARGEP[n - 1]
    acc = 0.0
    for c in reversed(coef):
        acc = acc * t + c
    return norm_cdf(acc)
