# AeroGuard: one image for the web tier and the edge nodes.
#
#   web  (default CMD): gunicorn -c webapp/gunicorn_conf.py "webapp:create_app()"
#   edge (stack override): python -m edge --group G --node-id N --zk HOSTS
#
# It installs requirements.txt only. TensorFlow never goes in: the web tier talks to
# TensorFlow Serving, and TensorFlow would add ~2 GB and 0.5 GB RSS per worker (PLATFORM.md).
# Build and push:  docker build -t REGISTRY/aeroguard:TAG . && docker push REGISTRY/aeroguard:TAG
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GUNICORN_BIND=0.0.0.0:8000

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

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
