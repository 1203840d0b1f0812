"""Settings of the web tier: small frozen dataclasses, one per concern, composed into `Settings`.

Every field names its environment variable next to it (``setting("REDIS_URL", …)``, see
webapp/environment.py), so `Settings.from_env` is one loop over the declared fields; README's
"Configuration" table lists the same variables, grouped the same way (tests/test_config.py
checks both). Only this module and webapp/environment.py read ``os.environ`` or secret files:
everything else receives the `Settings` (or the group it needs) as an argument.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import socket
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field

from webapp.environment import csv
from webapp.environment import host_ports
from webapp.environment import lines
from webapp.environment import optional_float
from webapp.environment import read_group
from webapp.environment import redis_url
from webapp.environment import secret
from webapp.environment import setting

SENSOR_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
ENVIRONMENTS = ("production", "local", "test")


@dataclass(frozen=True)
class PhysicalLimits:
    """Plausible range and maximum rate of change of one sensor, in physical units.

    Parameters
    ----------
    low, high
        Plausible range of a reading; outside it the physical rule votes.
    max_rate
        Largest plausible change per second of the newest reading from the level before it.
    min_interval_s
        Readings closer together than this are treated as this far apart when computing a
        rate (the nominal sampling period), so a burst of requests is not a steep slope.
    stuck_count
        This many identical readings in a row count as a stuck sensor (0 disables the check;
        on by default: a live sensor's noise never repeats a float reading ten times).
    """

    low: float = -40.0
    high: float = 150.0
    max_rate: float = 5.0
    min_interval_s: float = 1.0
    stuck_count: int = 10

    def __post_init__(self) -> None:
        for name in ("low", "high", "max_rate", "min_interval_s"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        if self.low >= self.high:
            raise ValueError("low must be below high")
        if self.max_rate <= 0 or self.min_interval_s <= 0:
            raise ValueError("max_rate and min_interval_s must be positive")
        if self.stuck_count < 0 or self.stuck_count == 1:
            raise ValueError("stuck_count must be 0 (off) or at least 2")


# -- variables that need more than int, float or str --------------------------------------

def _limits(text: str, default: PhysicalLimits = PhysicalLimits()) -> PhysicalLimits:
    """A JSON object such as ``{"low": 0, "high": 120}`` over the default limits."""
    if not text:
        return default
    values = json.loads(text)
    unknown = set(values) - {f.name for f in dataclasses.fields(PhysicalLimits)}
    if unknown:
        raise ValueError(f"unknown physical limit(s): {sorted(unknown)}")
    return dataclasses.replace(default, **values)


def _sensor_limits(text: str) -> dict[str, PhysicalLimits]:
    """``{"oven": {"high": 400}}``: each sensor's limits over the default ones."""
    return {sensor: _limits(json.dumps(spec)) for sensor, spec in json.loads(text or "{}").items()}


def _ingest_keys(env: Mapping[str, str], name: str = "API_KEYS") -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The keys valid everywhere, and each group's, from ``API_KEYS``/``API_KEYS_FILE``.

    An entry ``KEY`` or ``* KEY`` is valid for every group and sensor; ``GROUP KEY`` for that
    group (or ``/nuevo`` sensor id) only.

    >>> _ingest_keys({"API_KEYS": "k0, * k1, boiler-1 k2"})
    (('k0', 'k1'), {'boiler-1': ('k2',)})
    """
    every: list[str] = []
    groups: dict[str, tuple[str, ...]] = {}
    for entry in lines(env, name):
        fields = entry.split()
        if len(fields) > 2 or (len(fields) == 2 and fields[0] != "*" and not re.fullmatch(SENSOR_PATTERN, fields[0])):
            raise ValueError("each entry is KEY, * KEY or GROUP KEY")  # never echo a key
        if len(fields) == 1 or fields[0] == "*":
            every.append(fields[-1])
        else:
            groups[fields[0]] = (*groups.get(fields[0], ()), fields[1])
    return tuple(every), groups


def _keys_for_every_group(env: Mapping[str, str], name: str, default=()) -> tuple[str, ...]:
    return _ingest_keys(env, name)[0]


def _keys_per_group(env: Mapping[str, str], name: str, default=None) -> dict[str, tuple[str, ...]]:
    return _ingest_keys(env, name)[1]


def _admin_keys(env: Mapping[str, str], name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Admin keys (``PUT /api/v1/config``) from ``ADMIN_KEYS`` and ``ADMIN_KEYS_FILE``."""
    keys = lines(env, name)
    if any(len(key.split()) != 1 for key in keys):
        raise ValueError("one key per entry, without spaces")
    return tuple(keys)


# -- the groups ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class StorageSettings:
    """Redis: where it is, how long to wait and how hard to retry, and the key namespace."""

    redis_url: str = setting("REDIS_URL", "redis://127.0.0.1:6379/0", read=redis_url)
    redis_sentinels: tuple[tuple[str, int], ...] = setting("REDIS_SENTINELS", (), parse=host_ports)
    redis_sentinel_master: str = setting("REDIS_SENTINEL_MASTER", "aeroguard")
    # A Redis Cluster's startup nodes (host:port,...): the web tier then uses the cluster client.
    redis_cluster_nodes: tuple[tuple[str, int], ...] = setting("REDIS_CLUSTER_NODES", (), parse=host_ports)
    redis_password: str | None = setting("REDIS_PASSWORD", None, read=secret, secret=True)
    redis_socket_timeout_s: float = setting("REDIS_SOCKET_TIMEOUT_S", 2.0)
    redis_retries: int = setting("REDIS_RETRIES", 2)
    redis_backoff_base_s: float = setting("REDIS_BACKOFF_BASE_S", 0.05)
    redis_backoff_cap_s: float = setting("REDIS_BACKOFF_CAP_S", 0.5)
    redis_health_check_s: int = setting("REDIS_HEALTH_CHECK_S", 30)
    # /readyz asks Redis with its own connection: this timeout and no retry, so it answers 503 fast.
    redis_ready_timeout_s: float = setting("REDIS_READY_TIMEOUT_S", 0.5)
    # Requests per process that may wait on storage at once (gunicorn threads - 1: one thread
    # always free for /healthz); once every slot has waited storage_stall_s, others get 503 at once.
    storage_slots: int = setting("STORAGE_SLOTS", 3)
    storage_stall_s: float = setting("STORAGE_STALL_S", 0.5)
    redis_wait_replicas: int = setting("REDIS_WAIT_REPLICAS", 0)
    redis_wait_timeout_ms: int = setting("REDIS_WAIT_TIMEOUT_MS", 500)
    key_prefix: str = setting("AEROGUARD_KEY_PREFIX", "ag:")
    # Every key of a sensor or group carries the hash tag {crc32(name) % key_buckets}: a Redis
    # Cluster spreads at most this many buckets over its shards (docs/decisions.md, key layout).
    key_buckets: int = setting("AEROGUARD_KEY_BUCKETS", 16)

    def __post_init__(self) -> None:
        if self.key_buckets < 1:
            raise ValueError("key_buckets must be at least 1")
        if self.storage_slots < 1 or self.storage_stall_s <= 0 or self.redis_ready_timeout_s <= 0:
            raise ValueError("storage_slots must be at least 1, storage_stall_s and redis_ready_timeout_s positive")
        if self.redis_socket_timeout_s <= 0 or self.redis_retries < 0 or self.redis_health_check_s < 0:
            raise ValueError("redis_socket_timeout_s must be positive, redis_retries and redis_health_check_s >= 0")
        if not 0 < self.redis_backoff_base_s <= self.redis_backoff_cap_s:
            raise ValueError("redis_backoff_base_s must be positive and at most redis_backoff_cap_s")


@dataclass(frozen=True)
class RetentionSettings:
    """How long what is stored is kept."""

    retention_days: float = setting("RETENTION_DAYS", 3.0)
    minute_retention_days: float = setting("MINUTE_RETENTION_DAYS", 90.0)
    hour_retention_days: float = setting("HOUR_RETENTION_DAYS", 730.0)
    events_max: int = setting("EVENTS_MAX", 100_000)
    sensor_idle_days: float = setting("SENSOR_IDLE_DAYS", 30.0)
    idempotency_window_s: float = setting("IDEMPOTENCY_WINDOW_S", 600.0)

    def __post_init__(self) -> None:
        if self.retention_days <= 0:
            raise ValueError("retention_days must be positive")
        if self.sensor_idle_days <= 0 or self.idempotency_window_s <= 0:
            raise ValueError("sensor_idle_days and idempotency_window_s must be positive")


@dataclass(frozen=True)
class LimitSettings:
    """What one request, or one namespace, may ask for."""

    max_body_bytes: int = setting("MAX_BODY_BYTES", 256 * 1024)
    max_query_bytes: int = setting("MAX_QUERY_BYTES", 2048)
    list_default_count: int = setting("LIST_DEFAULT_COUNT", 100)
    list_max_count: int = setting("LIST_MAX_COUNT", 10_000)
    max_aggregates_per_request: int = setting("MAX_AGGREGATES_PER_REQUEST", 100)
    max_future_skew_s: float = setting("MAX_FUTURE_SKEW_S", 5.0)
    max_sensors: int = setting("MAX_SENSORS", 10_000)

    def __post_init__(self) -> None:
        if self.max_sensors < 0:
            raise ValueError("max_sensors must be >= 0 (0: no quota)")
        if min(self.max_body_bytes, self.max_query_bytes, self.list_default_count, self.list_max_count,
               self.max_aggregates_per_request) < 1 or self.list_default_count > self.list_max_count:
            raise ValueError("request limits must be positive, list_default_count at most list_max_count")


@dataclass(frozen=True)
class DetectionSettings:
    """The judged window, the vote, drift following and the physical rule's limits."""

    default_sensor: str = setting("DEFAULT_SENSOR", "default")
    window_size: int = setting("WINDOW_SIZE", 10)
    vote_required: int = setting("VOTE_REQUIRED", 3)
    drift_tau: float = setting("DRIFT_TAU", 1000.0)
    model_name: str = setting("MODEL_NAME", "autoencoder")
    threshold: float | None = setting("THRESHOLD", None, parse=optional_float)
    physical: PhysicalLimits = setting("PHYSICAL_LIMITS", default_factory=PhysicalLimits, parse=_limits)
    physical_per_sensor: Mapping[str, PhysicalLimits] = setting("SENSOR_LIMITS", default_factory=dict,
                                                                parse=_sensor_limits)

    def __post_init__(self) -> None:
        if self.window_size < 2:
            raise ValueError("window_size must be at least 2")
        if self.vote_required < 1:
            raise ValueError("vote_required must be at least 1")
        if not (self.drift_tau == 0 or self.drift_tau >= 1):
            raise ValueError("drift_tau must be 0 (off) or at least 1 reading")

    def limits_for(self, sensor: str) -> PhysicalLimits:
        """The physical limits of `sensor`: its own, or the default ones."""
        return self.physical_per_sensor.get(sensor, self.physical)


@dataclass(frozen=True)
class InferenceSettings:
    """Where the learned detectors run, and how long a call to them may take."""

    inference_backend: str = setting("INFERENCE_BACKEND", "")
    serving_host: str = setting("SERVING_HOST", "")
    serving_grpc_port: int = setting("SERVING_GRPC_PORT", 8500)
    serving_rest_port: int = setting("SERVING_REST_PORT", 8501)
    inference_timeout_s: float = setting("INFERENCE_TIMEOUT_S", 0.25)
    breaker_failures: int = setting("BREAKER_FAILURES", 5)
    breaker_reset_s: float = setting("BREAKER_RESET_S", 10.0)
    models_dir: str = setting("MODELS_DIR", "serving/models")

    def __post_init__(self) -> None:
        if self.inference_backend not in ("", "grpc", "rest", "inprocess"):
            raise ValueError("inference_backend must be grpc, rest or inprocess (empty: grpc with SERVING_HOST)")
        if self.inference_timeout_s <= 0:
            raise ValueError("inference_timeout_s must be positive")


@dataclass(frozen=True)
class AuthSettings:
    """Ingest keys (``API_KEYS``: every group's, and each group's own) and admin keys."""

    api_keys: tuple[str, ...] = setting("API_KEYS", (), secret=True, read=_keys_for_every_group)
    group_keys: Mapping[str, tuple[str, ...]] = setting("API_KEYS", default_factory=dict, secret=True,
                                                        read=_keys_per_group)
    admin_keys: tuple[str, ...] = setting("ADMIN_KEYS", (), secret=True, read=_admin_keys)

    @property
    def ingest_open(self) -> bool:
        """True when no ingest key is configured: the ingest endpoints take any request."""
        return not self.api_keys and not any(self.group_keys.values())


@dataclass(frozen=True)
class ClusterSettings:
    """ZooKeeper: the ensemble, its credentials and timeouts, and what hot config may name."""

    zk_hosts: str = setting("ZK_HOSTS", "")
    zk_root: str = setting("ZK_ROOT", "/aeroguard")
    zk_auth: str | None = setting("ZK_AUTH", None, read=secret, secret=True)
    zk_timeout_s: float = setting("ZK_TIMEOUT_S", 6.0)
    zk_connect_max_delay_s: float = setting("ZK_CONNECT_MAX_DELAY_S", 2.0)
    zk_command_retries: int = setting("ZK_COMMAND_RETRIES", 3)
    zk_command_max_delay_s: float = setting("ZK_COMMAND_MAX_DELAY_S", 1.0)
    # Hosts PUT /api/v1/config may point the edge at (api_urls); empty: any host.
    config_url_hosts: tuple[str, ...] = setting("CONFIG_URL_HOSTS", (), parse=csv)

    def __post_init__(self) -> None:
        if self.zk_auth is not None and not re.fullmatch(r"[^:\s]+:\S+", self.zk_auth):
            raise ValueError("ZK_AUTH must be user:password")
        if min(self.zk_timeout_s, self.zk_connect_max_delay_s, self.zk_command_max_delay_s) <= 0:
            raise ValueError("zk_timeout_s and the ZooKeeper retry delays must be positive")
        if self.zk_command_retries < 0:
            raise ValueError("zk_command_retries must be >= 0")


@dataclass(frozen=True)
class AlertSettings:
    """Incident logs and webhook alerts (webapp/alerting.py)."""

    alert_urls: tuple[str, ...] = setting("ALERT_URLS", (), parse=csv)
    alert_min_interval_s: float = setting("ALERT_MIN_INTERVAL_S", 300.0)
    alert_timeout_s: float = setting("ALERT_TIMEOUT_S", 3.0)
    alert_retries: int = setting("ALERT_RETRIES", 3)
    alert_backoff_s: float = setting("ALERT_BACKOFF_S", 0.5)
    alert_reclaim_s: float = setting("ALERT_RECLAIM_S", 15.0)
    alert_stream_max: int = setting("ALERT_STREAM_MAX", 10_000)
    alert_delivered_ttl_s: int = setting("ALERT_DELIVERED_TTL_S", 86_400)
    incident_log_max: int = setting("INCIDENT_LOG_MAX", 10_000)
    incident_sensor_log_max: int = setting("INCIDENT_SENSOR_LOG_MAX", 100)

    def __post_init__(self) -> None:
        if self.alert_min_interval_s < 0 or self.alert_retries < 1:
            raise ValueError("alert_min_interval_s must be >= 0 and alert_retries at least 1")
        if min(self.alert_timeout_s, self.alert_backoff_s, self.alert_reclaim_s, self.alert_stream_max,
               self.alert_delivered_ttl_s, self.incident_log_max, self.incident_sensor_log_max) <= 0:
            raise ValueError("alert timeouts, delays, lengths and TTL must be positive")


@dataclass(frozen=True)
class WebSettings:
    """This process: its environment, the name it answers with, where its metrics go."""

    env: str = setting("AEROGUARD_ENV", "production")
    hostname: str = setting("AEROGUARD_HOSTNAME", default_factory=socket.gethostname)
    prometheus_multiproc_dir: str = setting("PROMETHEUS_MULTIPROC_DIR", "")

    def __post_init__(self) -> None:
        if self.env not in ENVIRONMENTS:
            raise ValueError(f"AEROGUARD_ENV must be one of {', '.join(ENVIRONMENTS)}")


@dataclass(frozen=True)
class Settings:
    """Everything the web tier is configured with, by concern. Build it with `Settings.from_env()`."""

    storage: StorageSettings = field(default_factory=StorageSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    web: WebSettings = field(default_factory=WebSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from environment variables (README, "Configuration")."""
        env = os.environ if environ is None else environ
        return cls(**{group.name: read_group(group.default_factory, env) for group in dataclasses.fields(cls)})

    @classmethod
    def variables(cls) -> Iterator[tuple[str, str, str]]:
        """``(group, field, environment variable)`` of every setting, in declaration order."""
        for group in dataclasses.fields(cls):
            for item in dataclasses.fields(group.default_factory):
                yield group.name, item.name, item.metadata["env"]

    def replace(self, **changes) -> Settings:
        """A copy with `changes` applied, each named by its field whatever its group
        (``settings.replace(window_size=5, key_prefix="t:")``; tests build their settings so)."""
        groups = {}
        for group in dataclasses.fields(self):
            part = getattr(self, group.name)
            mine = {f.name: changes.pop(f.name) for f in dataclasses.fields(part) if f.name in changes}
            if mine:
                groups[group.name] = dataclasses.replace(part, **mine)
        if changes:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(changes))}")
        return dataclasses.replace(self, **groups)

    def check_secrets(self) -> None:
        """In production, raise `ValueError` unless the secrets a safe start needs are set.

        Production needs ingest keys (``API_KEYS``: an empty or blank keys file is none), admin
        keys distinct from them, and ZooKeeper credentials (``ZK_AUTH``) when ``ZK_HOSTS`` is
        set. The local demo and the tests run without them.
        """
        if self.web.env != "production":
            return
        auth, problems = self.auth, []
        if auth.ingest_open:
            problems.append("no ingest key (API_KEYS or API_KEYS_FILE holds none): ingest would be open")
        if set(auth.api_keys).union(*auth.group_keys.values()) & set(auth.admin_keys):
            problems.append("an ADMIN_KEYS key is also an ingest key (API_KEYS): use separate keys")
        if self.cluster.zk_hosts and not self.cluster.zk_auth:
            problems.append("ZK_HOSTS is set without ZK_AUTH or ZK_AUTH_FILE: the ZooKeeper tree would be open")
        if problems:
            raise ValueError("refusing to start with AEROGUARD_ENV=production: " + "; ".join(problems))
