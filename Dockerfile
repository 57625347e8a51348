# The pairstream flow: python -m bytewax.run flows.pairs with recovery on /recovery.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY pairstream ./pairstream
COPY flows ./flows
COPY connectors ./connectors
RUN pip install .

# numba compiles the parser and estimator kernels once, here, into a cache the (unprivileged)
# flow user can read: its first start does not pay the compilation.
ENV NUMBA_CACHE_DIR=/var/cache/pairstream-numba
# (Both copies: `pairstream` imports the installed package, the flow child `-m` the one in /app.)
RUN useradd --system --uid 10001 pairstream && mkdir /recovery && chown pairstream /recovery \
    && python -c "from flows.startup import warm_kernels; warm_kernels()" \
    && cd / && python -c "from flows.startup import warm_kernels; warm_kernels()" \
    && chown -R pairstream "$NUMBA_CACHE_DIR"

COPY pairstream.toml ./
# Rows QuestDB refuses ([questdb] dead_letter) go to the flow's own writable volume.
ENV PAIRSTREAM_DEAD_LETTER=/recovery/dead_letter.jsonl
USER pairstream
VOLUME ["/recovery"]

# `pairstream run --recovery DIR` initialises the Bytewax recovery partitions the first time
# (the project's own `init-recovery`) and runs `python -m bytewax.run flows.pairs -r DIR -s 5 -b 30`:
# snapshots every 5 s, backups kept 30 s; a restarted container resumes where it stopped.
CMD ["pairstream", "run", "--recovery", "/recovery"]
