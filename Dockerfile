# syntax=docker/dockerfile:1
# Tessera API and worker image: `tessera serve` by default, `tessera worker` for workers,
# `tessera migrate` as a one-off job before each release.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY tessera ./tessera
COPY handlers ./handlers
COPY models ./models
COPY workers ./workers
RUN pip install -c constraints.txt .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 TESSERA_ENV=production \
    TESSERA_HOME=/app TESSERA_DATA_DIR=/var/lib/tessera
RUN useradd --system --uid 10001 --home-dir /app tessera \
    && mkdir -p /var/lib/tessera && chown tessera /var/lib/tessera
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The contract and migrations are read at run time next to the installed packages.
COPY --chown=tessera openapi/openapi.yaml ./openapi/openapi.yaml
COPY --chown=tessera migrations ./migrations
COPY --chown=tessera alembic.ini ./
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["tessera"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
