"""AeroGuard's web tier: `create_app` builds the Flask app (flaskr's application factory)."""
from __future__ import annotations

import logging
import time

import redis
from flask import Flask
from flask import g
from flask import request
from flask.json.provider import DefaultJSONProvider
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry
from redis.sentinel import Sentinel
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import RequestEntityTooLarge

from webapp import metrics
from webapp.alerting import Incidents
from webapp.alerting import Notifier
from webapp.alerting import consumer_name
from webapp.config import ClusterSettings
from webapp.config import Settings
from webapp.config import StorageSettings
from webapp.detection import build_panel
from webapp.epochs import EpochVerifier
from webapp.errors import BadInput
from webapp.errors import WebappError
from webapp.responses import respond
from webapp.storage import DAY_MS
from webapp.storage import Store
from webapp.storage.base import ClusterClient

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web tier: settings, Redis pool, detectors, blueprints and error handlers.

    Parameters
    ----------
    settings
        Tests pass their own; otherwise they are read from the environment once, here.
    """
    settings = settings or Settings.from_env()
    settings.check_secrets()  # production without keys or ZooKeeper credentials never starts
    app = Flask(__name__)
    app.json = JSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.limits.max_body_bytes
    app.json.sort_keys = False
    client = make_redis(settings.storage)
    store = Store(client, settings)
    app.extensions.update(settings=settings, redis=client, store=store, panel=build_panel(settings),
                          zk=make_zookeeper(settings.cluster), notifier=None)
    app.extensions["epochs"] = EpochVerifier(app.extensions["zk"], settings.cluster.zk_root,
                                             strict=settings.web.env == "production")
    # Incidents are tracked and logged always (/api/v1/incidents); alerts only with ALERT_URLS.
    app.extensions["incidents"] = Incidents(client, store.keys, settings.detection.window_size, settings.alerts,
                                            state_ttl_ms=int(settings.retention.retention_days * DAY_MS))
    if settings.alerts.alert_urls:
        notifier = Notifier(client, store.keys, settings.alerts, consumer_name(settings.web.hostname))
        notifier.start()
        app.extensions["notifier"] = notifier

    app.before_request(read_body)  # first: every hook after it may refuse the request
    from webapp import api
    from webapp import cluster
    from webapp import dashboard
    from webapp import health
    from webapp import openapi

    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(cluster.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(dashboard.bp)
    _register_handlers(app)
    if settings.web.env == "local" and settings.auth.ingest_open:
        log.warning("no API keys configured: ingest endpoints are open (local demo only)")
    return app


def shutdown(app: Flask) -> None:
    """Stop what `create_app` started: the alert notifier, the ZooKeeper client, the Redis pool."""
    ext = app.extensions
    if ext.get("notifier") is not None:
        ext["notifier"].stop()
    if ext.get("zk") is not None:
        ext["zk"].stop()
        ext["zk"].close()
    ext["redis"].close()
    if ext.get("readiness") is not None:  # /readyz's own connection (webapp.health)
        ext["readiness"].client.close()


def read_body() -> None:
    """Read the request's body (at most ``MAX_CONTENT_LENGTH``, else 413) before anything may refuse it.

    A refusal answered with the body still unread (a 401 without a key, a 403, a busy 503) made
    HAProxy reset the client's HTTP/2 stream now and then: curl got ``(92) HTTP/2 stream 1 was
    not closed cleanly: PROTOCOL_ERROR`` instead of the 401 (``make swarm-test``; reproduced with
    Debian's haproxy in front of gunicorn: 10 of 300 unkeyed POSTs of 250 KB, none once the body
    is read; tests/test_stack_haproxy.py). ``get_json`` then parses the copy kept here.
    """
    request.get_data(cache=True)


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, with a too deeply nested body (``[[[[...``) counted as invalid JSON.

    The parser raises RecursionError there, which ``get_json(silent=True)`` does not catch:
    without this a 200 KB body of brackets was answered 500 (found by ``make fuzz``).
    """

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def make_redis(storage: StorageSettings) -> redis.Redis:
    """One pool per process, with explicit timeouts and a bounded, backed-off retry.

    With ``REDIS_CLUSTER_NODES`` a `redis.cluster.RedisCluster` (each key's master found from
    its slot, followed across failovers); with ``REDIS_SENTINELS`` the master is found through
    Sentinel (one write point, followed across failovers); otherwise ``REDIS_URL`` names the server.
    """
    timeout = storage.redis_socket_timeout_s
    options = dict(
        decode_responses=True,
        password=storage.redis_password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=storage.redis_backoff_cap_s, base=storage.redis_backoff_base_s),
                    storage.redis_retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=storage.redis_health_check_s,
    )
    if storage.redis_cluster_nodes:
        nodes = [ClusterNode(host, port) for host, port in storage.redis_cluster_nodes]
        options.pop("retry_on_error")  # the cluster client retries connection errors by itself
        return ClusterClient(startup_nodes=nodes, **options)
    if storage.redis_sentinels:
        sentinel = Sentinel(
            list(storage.redis_sentinels), min_other_sentinels=1,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # The stack's Sentinels require the Redis password too (redis/entrypoint.sh).
            sentinel_kwargs={"socket_timeout": timeout, "password": storage.redis_password},
        )
        return sentinel.master_for(storage.redis_sentinel_master, **options)
    return redis.Redis.from_url(storage.redis_url, **options)


def make_zookeeper(cluster: ClusterSettings):
    """A started kazoo client for the cluster view and hot configuration, or None.

    It connects in the background so the web tier serves readings while ZooKeeper is away.
    With ``ZK_AUTH`` (``user:password``) it authenticates by digest and creates every znode
    readable and writable by that user only (the edge nodes use the same credentials).
    """
    if not cluster.zk_hosts:
        return None
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry
    from kazoo.security import make_digest_acl

    acl = {}
    if cluster.zk_auth:
        user, _, password = cluster.zk_auth.partition(":")
        acl = dict(auth_data=[("digest", cluster.zk_auth)], default_acl=[make_digest_acl(user, password, all=True)])
    zk = KazooClient(hosts=cluster.zk_hosts, timeout=cluster.zk_timeout_s,
                     connection_retry=KazooRetry(max_tries=-1, max_delay=cluster.zk_connect_max_delay_s),
                     command_retry=KazooRetry(max_tries=cluster.zk_command_retries,
                                              max_delay=cluster.zk_command_max_delay_s), **acl)
    zk.start_async()
    return zk


def _register_handlers(app: Flask) -> None:
    @app.before_request
    def start_timer():
        g.started = time.perf_counter()
        limit = app.extensions["settings"].limits.max_query_bytes
        if len(request.query_string) > limit:
            raise BadInput(f"query string longer than {limit} bytes")

    @app.after_request
    def finish(response):
        response.headers["X-Served-By"] = app.extensions["settings"].web.hostname
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        started = g.get("started")
        if started is not None:
            metrics.REQUEST_SECONDS.labels(endpoint, metrics.method_label(request.method),
                                           str(response.status_code)).observe(
                time.perf_counter() - started)
        return response

    @app.errorhandler(WebappError)
    def webapp_error(exc: WebappError):
        if exc.status == 400:
            metrics.REJECTED.labels("bad_input").inc()
        return respond({"error": exc.message, **exc.details}, exc.status)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        metrics.REJECTED.labels("too_large").inc()
        limit = app.extensions["settings"].limits.max_body_bytes
        return respond({"error": f"body larger than {limit} bytes"}, 400)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return respond({"error": exc.description}, exc.code or 500)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return respond({"error": "internal error"}, 500)
