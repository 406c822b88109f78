# syntax=docker/dockerfile:1.7
# One codebase, two images:
#   docker build --target server -t recordings:server .   (uvicorn on the EC2 hosts)
#   docker build --target lambda -t recordings:lambda .   (Mangum behind API Gateway)
# Base images are pinned by tag; Dependabot (docker ecosystem) proposes updates.

# ---- deps: the runtime dependencies in a virtualenv, built once and copied into `server` ----
FROM python:3.11.11-slim-bookworm AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt /tmp/requirements.txt
# Byte-compiled here, once, in unchecked-hash mode (see the lambda stage): the non-root user
# cannot write .pyc files at run time.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-compile -r /tmp/requirements.txt \
    && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

# ---- dbca: the CA bundle for sslmode=verify-full to the database ----
# RDS instances present certificates of the RDS CAs (AWS's global bundle); RDS Proxy presents an
# ACM certificate that chains to the public Amazon roots. One file trusts both.
FROM python:3.11.11-slim-bookworm AS dbca
ADD --chmod=644 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /tmp/rds-global-bundle.pem
RUN mkdir -p /opt/recordings \
    && cat /tmp/rds-global-bundle.pem /etc/ssl/certs/ca-certificates.crt > /opt/recordings/db-ca-bundle.pem \
    && grep -q "Amazon RDS" /opt/recordings/db-ca-bundle.pem

# ---- server: non-root uvicorn, workers from WEB_CONCURRENCY, port from PORT ----
FROM python:3.11.11-slim-bookworm AS server
LABEL org.opencontainers.image.title="recordings-service" \
      org.opencontainers.image.description="Recordings API (FastAPI, presigned S3 uploads, PostgreSQL metadata)" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/recordings-service/recordings-service"
# PROMETHEUS_MULTIPROC_DIR: every uvicorn worker writes its metrics there and /metrics aggregates
# them (service/observability/metrics/); `serve` empties it at start.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RUNTIME=server \
    WEB_CONCURRENCY=2 \
    PORT=8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus-multiproc
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
COPY --from=deps /opt/venv /opt/venv
COPY --from=dbca /opt/recordings/db-ca-bundle.pem /opt/recordings/db-ca-bundle.pem
WORKDIR /app
COPY --chown=root:root service/ service/
COPY --chown=root:root migrations/ migrations/
COPY --chown=root:root alembic.ini ./
# The backup verifier (`python -m ops.backup`), run from an app host (RUNBOOK.md).
COPY --chown=root:root ops/__init__.py ops/
COPY --chown=root:root ops/backup/ ops/backup/
RUN python -m compileall -q --invalidation-mode unchecked-hash service migrations ops/__init__.py ops/backup
USER 10001:10001
EXPOSE 8000
# uvicorn finishes in-flight requests on SIGTERM (timeout_graceful_shutdown in `serve`); give
# `docker stop` a longer timeout than that (the deploy script uses -t 30).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=2)"]
# Exec form: python is PID 1 and receives SIGTERM itself.
CMD ["python", "-m", "service", "serve", "--host", "0.0.0.0"]

# ---- lambda: the same code behind Mangum (handlers/api.py) ----
FROM public.ecr.aws/lambda/python:3.12 AS lambda
ENV RUNTIME=lambda PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --no-compile -r /tmp/requirements.txt --target "${LAMBDA_TASK_ROOT}" \
    && rm /tmp/requirements.txt
COPY service/ ${LAMBDA_TASK_ROOT}/service/
COPY handlers/ ${LAMBDA_TASK_ROOT}/handlers/
COPY migrations/ ${LAMBDA_TASK_ROOT}/migrations/
COPY alembic.ini ${LAMBDA_TASK_ROOT}/
# Bytecode for the app and its libraries, compiled once at build time by the runtime's own
# python: /var/task is read-only in Lambda, so without it every cold start compiles every module
# it imports. unchecked-hash: the .pyc is used without looking at the source's mtime, which COPY,
# a rebuilt layer or a timestamp-rewriting export may change (a timestamp .pyc would then be stale
# and silently ignored); the image never changes its sources, so there is nothing to check.
# .dockerignore keeps the host's own .pyc files out of the context.
RUN python -m compileall -q -j 0 --invalidation-mode unchecked-hash "${LAMBDA_TASK_ROOT}"
# Nothing left to compile at run time, and nowhere to write it.
ENV PYTHONDONTWRITEBYTECODE=1
COPY --from=dbca /opt/recordings/db-ca-bundle.pem /opt/recordings/db-ca-bundle.pem
CMD ["handlers.api.handler"]
