# The pairstream flow: python -m bytewax.run flows.pairs with recovery on /recovery.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY flows ./flows
COPY connectors ./connectors
RUN pip install .

COPY pairstream.toml ./
RUN useradd --system --uid 10001 pairstream && mkdir /recovery && chown pairstream /recovery
USER pairstream
VOLUME ["/recovery"]

# bytewax 0.21: the recovery directory must exist and be initialised once
# (python -m bytewax.recovery DIR PARTS fails if it already holds partitions);
# then snapshot every 5 s and keep 30 s of backups.
CMD ["sh", "-c", "[ -e /recovery/part-0.sqlite3 ] || python -m bytewax.recovery /recovery 1; exec python -m bytewax.run flows.pairs -r /recovery -s 5 -b 30"]
