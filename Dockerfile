# citeqa API image: `docker build -t citeqa .`, then `docker compose up` (see docker-compose.yml).
# Configuration is by environment only (CITEQA_*, see README); nothing secret is baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    CITEQA_DATA_DIR=/data \
    CITEQA_PORT=8000

WORKDIR /app

# Dependencies first, from pyproject.toml alone: a code change reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Editable install: the bundled corpus (data/) and the prompts (prompts/) are read from /app.
COPY . .
RUN pip install --no-deps -e . \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin citeqa \
 && mkdir -p /data \
 && chown citeqa:citeqa /data

USER citeqa
EXPOSE 8000

# Liveness only (/healthz checks nothing external); readiness is /readyz. The first start
# against an empty store ingests the bundled corpus before serving, hence the start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CITEQA_PORT', '8000'), timeout=4)"]

CMD ["citeqa", "serve", "--host", "0.0.0.0"]
