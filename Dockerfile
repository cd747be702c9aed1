# citeqa API image: `docker build -t citeqa .`, then `docker compose up` (see docker-compose.yml).
# Configuration is by environment only (CITEQA_*, see README); nothing secret is baked in.
#
# Two stages: the first builds citeqa's wheel from the source, the second installs that wheel
# and the lock's pins into a slim image. No source tree and no editable install in the image:
# the wheel carries the prompts, the web page, the tokenizer and the bundled corpus.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The build tools from the lock (pip, setuptools, build), then the wheel without build isolation:
# nothing unpinned takes part in the build.
COPY requirements/build.txt requirements/build.txt
RUN pip install --require-hashes -r requirements/build.txt
COPY . .
RUN python -m build --no-isolation --wheel --outdir /dist .


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    CITEQA_DATA_DIR=/data \
    CITEQA_PORT=8000

# Dependencies first, exactly the lock (versions and file hashes): a code change reuses this layer.
# The locked pip installs them (an older pip fetches an unpinned release for an extra such as
# chromadb's `uvicorn[standard]` and stops in --require-hashes mode).
COPY requirements/build.txt /tmp/build.txt
COPY requirements/runtime.txt /tmp/runtime.txt
RUN pip install --require-hashes -r /tmp/build.txt \
 && pip install --require-hashes -r /tmp/runtime.txt \
 && rm /tmp/build.txt /tmp/runtime.txt

COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-deps /tmp/dist/citeqa-*.whl \
 && pip check \
 && rm -r /tmp/dist \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin citeqa \
 && mkdir -p /data/files \
 && chown -R citeqa:citeqa /data

USER citeqa
WORKDIR /home/citeqa
EXPOSE 8000

# Liveness only (/healthz checks nothing external); readiness is /readyz. The first start
# against an empty store ingests the bundled corpus before serving, hence the start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CITEQA_PORT', '8000'), timeout=4)"]

CMD ["citeqa", "serve", "--host", "0.0.0.0"]
