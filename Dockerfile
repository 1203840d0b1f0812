# AeroGuard: one image for the web tier and the edge nodes.
#
#   web  (default CMD): gunicorn -c webapp/gunicorn_conf.py "webapp:create_app()"
#   edge (stack override): python -m edge --group G --node-id N --zk HOSTS
#
# It installs requirements.txt only. TensorFlow never goes in: the web tier talks to
# TensorFlow Serving, and TensorFlow would add ~2 GB and 0.5 GB RSS per worker (PLATFORM.md).
# Build and push:  docker build -t REGISTRY/aeroguard:TAG . && docker push REGISTRY/aeroguard:TAG
# BASE_IMAGE: the public Python image by default. `make swarm-up` (scripts/swarm.py), where
# nothing can be pulled, builds FROM a Debian base made with debootstrap and gets Debian's
# python3 (3.11) instead: the RUN below installs it only when the base has no python3.
# Built with BuildKit (the default since Docker 23; DOCKER_BUILDKIT=1 before).
ARG BASE_IMAGE=python:3.11.13-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GUNICORN_BIND=0.0.0.0:8000

WORKDIR /app

# A virtualenv on PATH, so `python`, `pip` and `gunicorn` are the same on either base.
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Dependencies first, so a code change does not reinstall them. The optional build secret
# `pip_ca` is a CA bundle for pip where TLS to the package index is signed by a local CA
# (`--secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt`); it never lands in a layer.
COPY requirements.txt .
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && pip install --no-cache-dir -r requirements.txt

# A fixed numeric uid, so volume ownership and `USER` checks do not depend on /etc/passwd.
# /var/lib/aeroguard holds the edge's delivery spool; a named volume mounted there starts
# with this ownership.
RUN groupadd --system --gid 10001 aeroguard \
    && useradd --system --uid 10001 --gid aeroguard --home-dir /app --shell /usr/sbin/nologin aeroguard \
    && mkdir -p /var/lib/aeroguard/spool \
    && chown -R aeroguard:aeroguard /var/lib/aeroguard

# Code and the small model artefacts (manifest, IsolationForest). SavedModels are left out by
# .dockerignore: TF Serving serves them, this image cannot run them.
COPY contracts/ contracts/
COPY webapp/ webapp/
COPY edge/ edge/
COPY serving/models/ serving/models/

USER 10001:10001

EXPOSE 8000

# Liveness only (/healthz, not /readyz): Swarm restarts an unhealthy task, and a replica must
# not be restarted because Redis or TF Serving is down. No curl in slim images: use Python.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

CMD ["gunicorn", "-c", "webapp/gunicorn_conf.py", "webapp:create_app()"]
