"""Bytewax operators, the dataflow wiring and the ``pairstream`` CLI.

In the process ``python -m bytewax.run flows.pairs`` starts, Ctrl-C and SIGTERM end the flow
with one line after the sink has written what it holds (:mod:`connectors.shutdown`). This is
installed here, at the first import of ``flows``, so that it also covers the seconds the flow's
own imports take; in any other process (tests, notebooks, the CLI) it does nothing.
"""

from connectors.shutdown import install_when_run_by_bytewax

install_when_run_by_bytewax()
