# idnode as a container: `docker build -t idnode .` (docs/operations.md).
# The wheel is built in a first stage; the image holds the installed package only.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir build==1.2.2 setuptools==80.9.0 \
    && python -m build --no-isolation --wheel --outdir /wheels

FROM python:3.11-slim
COPY --from=build /wheels /wheels
# pg_dump and pg_restore, for `idnode backup` of a node on PostgreSQL.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/idnode \
       --no-create-home --shell /usr/sbin/nologin idnode \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/idnode
# By number, so that hosts without the name agree on who owns the volume.
USER 10001:10001
WORKDIR /var/lib/idnode
# The node's database (SQLite), keys and idnode.toml; back it up with `idnode backup`.
VOLUME ["/var/lib/idnode"]
# Handle protocol (UDP and TCP) and HTTP.
EXPOSE 2641/udp 2641/tcp 8000/tcp
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["idnode"]
CMD ["serve", "--data-dir", "/var/lib/idnode"]
