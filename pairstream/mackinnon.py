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

# The standard normal CDF as scipy.special.ndtr computes it (Cephes Math Library, S. L. Moshier,
# ndtr.c: erf by a rational function on [0, 1], erfc by two on [1, 8) and [8, ∞)), so the
# p-values are bit for bit statsmodels' without importing scipy.special (~0.2-0.4 s) at start-up.
_ERFC_P = (
    2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
    4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
    9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2,
)  # fmt: skip
_ERFC_Q = (  # leading coefficient 1
    1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
    9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
    1.65666309194161350182e3, 5.57535340817727675546e2,
)  # fmt: skip
_ERFC_R = (
    5.64189583547755073984e-1, 1.27536670759978104416e0, 5.01905042251180477414e0,
    6.16021097993053585195e0, 7.40974269950448939160e0, 2.97886665372100240670e0,
)  # fmt: skip
_ERFC_S = (  # leading coefficient 1
    2.26052863220117276590e0, 9.39603524938001434673e0, 1.20489539808096656605e1,
    1.70814450747565897222e1, 9.60896809063285878198e0, 3.36907645100081516050e0,
)  # fmt: skip
_ERF_T = (
    9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
    7.00332514112805075473e3, 5.55923013010394962768e4,
)  # fmt: skip
_ERF_U = (  # leading coefficient 1
    3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
    2.26290000613890934246e4, 4.92673942608635921086e4,
)  # fmt: skip
_MAXLOG = 7.09782712893383996843e2
_SQRT1_2 = 0.70710678118654752440  # M_SQRT1_2


def _horner(x: float, coef: tuple[float, ...], monic: bool = False) -> float:
    """Polynomial, highest power first (Cephes' polevl; ``monic``: an implicit leading 1)."""
    acc = x + coef[0] if monic else coef[0]
    for c in coef[1:]:
        acc = acc * x + c
    return acc


def _erf(x: float) -> float:
    if x < 0.0:
        return -_erf(-x)
    if x > 1.0:
        return 1.0 - _erfc(x)
    z = x * x
    return x * _horner(z, _ERF_T) / _horner(z, _ERF_U, monic=True)


def _erfc(a: float) -> float:
    x = -a if a < 0.0 else a
    if x < 1.0:
        return 1.0 - _erf(a)
    z = -a * a
    if z < -_MAXLOG:
        return 2.0 if a < 0 else 0.0
    z = math.exp(z)
    if x < 8.0:
        y = (z * _horner(x, _ERFC_P)) / _horner(x, _ERFC_Q, monic=True)
    else:
        y = (z * _horner(x, _ERFC_R)) / _horner(x, _ERFC_S, monic=True)
    if a < 0:
        y = 2.0 - y
    if y == 0.0:
        return 2.0 if a < 0 else 0.0
    return y


def norm_cdf(a: float) -> float:
    """Standard normal CDF, ``scipy.special.ndtr`` bit for bit (same algorithm, libm ``exp``)."""
    if math.isnan(a):
        return math.nan
    x = a * _SQRT1_2
    z = abs(x)
    if z < _SQRT1_2:
        return 0.5 + 0.5 * _erf(x)
    y = 0.5 * _erfc(z)
    return 1.0 - y if x > 0 else y


def mackinnon_p_c(t: float, n: int = 1) -> float:
    """``statsmodels.tsa.adfvalues.mackinnonp(t, regression="c", N=n)``, bit for bit.

    The same tables, cut-offs and polynomial (Horner, highest power first, like ``np.polyval``
    of the reversed coefficients) and the same normal CDF (:func:`norm_cdf`), so the same float.
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
