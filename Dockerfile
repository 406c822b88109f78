# syntax=docker/dockerfile:1.7
# One codebase, two images: `--target server` (uvicorn on EC2) and `--target lambda` (Mangum).

FROM python:3.11.11-slim-bookworm AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-compile -r /tmp/requirements.txt

FROM python:3.11.11-slim-bookworm AS server
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    RUNTIME=server WEB_CONCURRENCY=2 PORT=8000
RUN useradd --system --uid 10001 --no-create-home app
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY service/ service/
COPY migrations/ migrations/
COPY alembic.ini ./
USER 10001
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=2)"]
CMD ["python", "-m", "service", "serve", "--host", "0.0.0.0"]

FROM public.ecr.aws/lambda/python:3.11 AS lambda
ENV RUNTIME=lambda PYTHONDONTWRITEBYTECODE=1
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --no-compile -r /tmp/requirements.txt --target "${LAMBDA_TASK_ROOT}"
COPY service/ ${LAMBDA_TASK_ROOT}/service/
COPY handlers/ ${LAMBDA_TASK_ROOT}/handlers/
COPY migrations/ ${LAMBDA_TASK_ROOT}/migrations/
COPY alembic.ini ${LAMBDA_TASK_ROOT}/
CMD ["handlers.api.handler"]
