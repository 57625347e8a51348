"""The one error type of the Grafana connectors, apart from them.

The start-up code names every user-fixable error it turns into a one-line exit; importing it
from :mod:`connectors.grafana` would load grafana-client and its HTTP stack (~0.5 s) into every
start, although only ``pairstream grafana sync`` and ``[grafana] annotations`` need them.
"""

from __future__ import annotations


class GrafanaError(RuntimeError):
    """A problem the user can fix; ``str(err)`` is one line ending with the fix."""
