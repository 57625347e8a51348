"""pairstream's domain library: records, configuration, bars, estimators, signals, rules, backtest.

Plain Python and numba: no Bytewax, no QuestDB client, no network code, so a notebook can import
any of it. ``connectors/`` (the outside world) and ``flows/`` (the Bytewax dataflow and the CLI)
are built on it; nothing here imports either.
"""
