"""Settings of the web tier: one frozen dataclass, built once from the environment and secret files.

This is the only module of `webapp` that reads ``os.environ`` or secret files. Everything else
receives the `Settings` (or the part it needs) as an argument.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field

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


@dataclass(frozen=True)
class Settings:
    """Everything the web tier is configured with. Build it with `Settings.from_env()`."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "aeroguard"
    redis_password: str | None = field(default=None, repr=False)
    redis_socket_timeout_s: float = 2.0
    # /readyz asks Redis with its own connection: this timeout and no retry, so it answers 503 fast.
    redis_ready_timeout_s: float = 0.5
    # Requests per process that may wait on storage at once (gunicorn threads - 1: one thread
    # always free for /healthz); once every slot has waited storage_stall_s, others get 503 at once.
    storage_slots: int = 3
    storage_stall_s: float = 0.5
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 500
    key_prefix: str = "ag:"
    zk_hosts: str = ""
    zk_root: str = "/aeroguard"
    # Hosts PUT /api/v1/config may point the edge at (api_urls); empty: any host.
    config_url_hosts: tuple[str, ...] = ()
    default_sensor: str = "default"
    window_size: int = 10
    vote_required: int = 3
    drift_tau: float = 1000.0
    retention_days: float = 3.0
    minute_retention_days: float = 90.0
    hour_retention_days: float = 730.0
    events_max: int = 100_000
    max_body_bytes: int = 256 * 1024
    list_default_count: int = 100
    list_max_count: int = 10_000
    max_aggregates_per_request: int = 100
    max_future_skew_s: float = 5.0
    max_sensors: int = 10_000
    sensor_idle_days: float = 30.0
    idempotency_window_s: float = 600.0
    model_name: str = "autoencoder"
    serving_host: str = ""
    threshold: float | None = None
    inference_backend: str = ""
    serving_grpc_port: int = 8500
    serving_rest_port: int = 8501
    inference_timeout_s: float = 0.25
    breaker_failures: int = 5
    breaker_reset_s: float = 10.0
    models_dir: str = "serving/models"
    physical: PhysicalLimits = field(default_factory=PhysicalLimits)
    physical_per_sensor: Mapping[str, PhysicalLimits] = field(default_factory=dict)
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    group_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    admin_keys: tuple[str, ...] = field(default=(), repr=False)
    zk_auth: str | None = field(default=None, repr=False)
    alert_urls: tuple[str, ...] = ()
    alert_min_interval_s: float = 300.0
    alert_timeout_s: float = 3.0
    hostname: str = field(default_factory=socket.gethostname)
    prometheus_multiproc_dir: str = ""
    env: str = "production"

    def __post_init__(self) -> None:
        if self.window_size < 2:
            raise ValueError("window_size must be at least 2")
        if self.vote_required < 1:
            raise ValueError("vote_required must be at least 1")
        if not (self.drift_tau == 0 or self.drift_tau >= 1):
            raise ValueError("drift_tau must be 0 (off) or at least 1 reading")
        if self.retention_days <= 0:
            raise ValueError("retention_days must be positive")
        if self.max_sensors < 0 or self.sensor_idle_days <= 0 or self.idempotency_window_s <= 0:
            raise ValueError("max_sensors must be >= 0 (0: no quota), sensor_idle_days and "
                             "idempotency_window_s positive")
        if self.inference_backend not in ("", "grpc", "rest", "inprocess"):
            raise ValueError("inference_backend must be grpc, rest or inprocess (empty: grpc with SERVING_HOST)")
        if self.inference_timeout_s <= 0:
            raise ValueError("inference_timeout_s must be positive")
        if self.storage_slots < 1 or self.storage_stall_s <= 0 or self.redis_ready_timeout_s <= 0:
            raise ValueError("storage_slots must be at least 1, storage_stall_s and redis_ready_timeout_s positive")
        if self.env not in ENVIRONMENTS:
            raise ValueError(f"AEROGUARD_ENV must be one of {', '.join(ENVIRONMENTS)}")
        if self.zk_auth is not None and not re.fullmatch(r"[^:\s]+:\S+", self.zk_auth):
            raise ValueError("ZK_AUTH must be user:password")

    @property
    def ingest_open(self) -> bool:
        """True when no ingest key is configured: the ingest endpoints take any request."""
        return not self.api_keys and not any(self.group_keys.values())

    def check_secrets(self) -> None:
        """In production, raise `ValueError` unless the secrets a safe start needs are set.

        Production needs ingest keys (``API_KEYS``: an empty or blank keys file is none), admin
        keys distinct from them, and ZooKeeper credentials (``ZK_AUTH``) when ``ZK_HOSTS`` is
        set. The local demo and the tests run without them.
        """
        if self.env != "production":
            return
        problems = []
        if self.ingest_open:
            problems.append("no ingest key (API_KEYS or API_KEYS_FILE holds none): ingest would be open")
        ingest = set(self.api_keys).union(*self.group_keys.values())
        if ingest & set(self.admin_keys):
            problems.append("an ADMIN_KEYS key is also an ingest key (API_KEYS): use separate keys")
        if self.zk_hosts and not self.zk_auth:
            problems.append("ZK_HOSTS is set without ZK_AUTH or ZK_AUTH_FILE: the ZooKeeper tree would be open")
        if problems:
            raise ValueError("refusing to start with AEROGUARD_ENV=production: " + "; ".join(problems))

    def limits_for(self, sensor: str) -> PhysicalLimits:
        """The physical limits of `sensor`: its own, or the default ones."""
        return self.physical_per_sensor.get(sensor, self.physical)

    def replace(self, **changes) -> Settings:
        """A copy with `changes` applied (tests build their settings this way)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from environment variables (see README, "Configuration")."""
        env = os.environ if environ is None else environ
        defaults = cls()
        redis_url = env.get("REDIS_URL") or (
            f"redis://{env['REDIS_HOST']}:{env.get('REDIS_PORT', '6379')}/0"
            if env.get("REDIS_HOST") else defaults.redis_url
        )
        threshold = env.get("THRESHOLD")
        return cls(
            redis_url=redis_url,
            redis_sentinels=_host_ports(env.get("REDIS_SENTINELS", "")),
            redis_sentinel_master=env.get("REDIS_SENTINEL_MASTER", defaults.redis_sentinel_master),
            redis_password=_secret(env, "REDIS_PASSWORD"),
            redis_wait_replicas=int(env.get("REDIS_WAIT_REPLICAS", defaults.redis_wait_replicas)),
            redis_wait_timeout_ms=int(env.get("REDIS_WAIT_TIMEOUT_MS", defaults.redis_wait_timeout_ms)),
            redis_socket_timeout_s=float(env.get("REDIS_SOCKET_TIMEOUT_S", defaults.redis_socket_timeout_s)),
            redis_ready_timeout_s=float(env.get("REDIS_READY_TIMEOUT_S", defaults.redis_ready_timeout_s)),
            storage_slots=int(env.get("STORAGE_SLOTS", defaults.storage_slots)),
            storage_stall_s=float(env.get("STORAGE_STALL_S", defaults.storage_stall_s)),
            key_prefix=env.get("AEROGUARD_KEY_PREFIX", defaults.key_prefix),
            zk_hosts=env.get("ZK_HOSTS", ""),
            zk_root=env.get("ZK_ROOT", defaults.zk_root),
            config_url_hosts=tuple(h.strip() for h in env.get("CONFIG_URL_HOSTS", "").split(",") if h.strip()),
            default_sensor=env.get("DEFAULT_SENSOR", defaults.default_sensor),
            window_size=int(env.get("WINDOW_SIZE", defaults.window_size)),
            vote_required=int(env.get("VOTE_REQUIRED", defaults.vote_required)),
            drift_tau=float(env.get("DRIFT_TAU", defaults.drift_tau)),
            retention_days=float(env.get("RETENTION_DAYS", defaults.retention_days)),
            minute_retention_days=float(env.get("MINUTE_RETENTION_DAYS", defaults.minute_retention_days)),
            hour_retention_days=float(env.get("HOUR_RETENTION_DAYS", defaults.hour_retention_days)),
            events_max=int(env.get("EVENTS_MAX", defaults.events_max)),
            max_body_bytes=int(env.get("MAX_BODY_BYTES", defaults.max_body_bytes)),
            max_future_skew_s=float(env.get("MAX_FUTURE_SKEW_S", defaults.max_future_skew_s)),
            max_sensors=int(env.get("MAX_SENSORS", defaults.max_sensors)),
            sensor_idle_days=float(env.get("SENSOR_IDLE_DAYS", defaults.sensor_idle_days)),
            idempotency_window_s=float(env.get("IDEMPOTENCY_WINDOW_S", defaults.idempotency_window_s)),
            list_max_count=int(env.get("LIST_MAX_COUNT", defaults.list_max_count)),
            model_name=env.get("MODEL_NAME", defaults.model_name),
            serving_host=env.get("SERVING_HOST", ""),
            threshold=float(threshold) if threshold else None,
            inference_backend=env.get("INFERENCE_BACKEND", defaults.inference_backend),
            serving_grpc_port=int(env.get("SERVING_GRPC_PORT", defaults.serving_grpc_port)),
            serving_rest_port=int(env.get("SERVING_REST_PORT", defaults.serving_rest_port)),
            inference_timeout_s=float(env.get("INFERENCE_TIMEOUT_S", defaults.inference_timeout_s)),
            breaker_failures=int(env.get("BREAKER_FAILURES", defaults.breaker_failures)),
            breaker_reset_s=float(env.get("BREAKER_RESET_S", defaults.breaker_reset_s)),
            models_dir=env.get("MODELS_DIR", defaults.models_dir),
            physical=_limits(env.get("PHYSICAL_LIMITS"), defaults.physical),
            physical_per_sensor={
                sensor: _limits(json.dumps(spec), defaults.physical)
                for sensor, spec in json.loads(env.get("SENSOR_LIMITS") or "{}").items()
            },
            **_ingest_keys(env),
            admin_keys=_admin_keys(env),
            zk_auth=_secret(env, "ZK_AUTH"),
            alert_urls=tuple(u.strip() for u in env.get("ALERT_URLS", "").split(",") if u.strip()),
            alert_min_interval_s=float(env.get("ALERT_MIN_INTERVAL_S", defaults.alert_min_interval_s)),
            alert_timeout_s=float(env.get("ALERT_TIMEOUT_S", defaults.alert_timeout_s)),
            prometheus_multiproc_dir=env.get("PROMETHEUS_MULTIPROC_DIR", ""),
            env=env.get("AEROGUARD_ENV", defaults.env),
        )


def _limits(spec: str | None, default: PhysicalLimits) -> PhysicalLimits:
    """Parse a JSON object such as ``{"low": 0, "high": 120}`` over the default limits."""
    if not spec:
        return default
    values = json.loads(spec)
    unknown = set(values) - {f.name for f in dataclasses.fields(PhysicalLimits)}
    if unknown:
        raise ValueError(f"unknown physical limit(s): {sorted(unknown)}")
    return dataclasses.replace(default, **values)


def _host_ports(spec: str) -> tuple[tuple[str, int], ...]:
    """``"a:26379,b:26379"`` as ``(("a", 26379), ("b", 26379))``."""
    pairs = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {item!r}")
        pairs.append((host, int(port)))
    return tuple(pairs)


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """The value of `name`, or the first line of the file named by ``<name>_FILE``."""
    path = env.get(f"{name}_FILE")
    if path:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().strip() or None
    return env.get(name) or None


def _lines(env: Mapping[str, str], name: str) -> list[str]:
    """Entries of ``<name>`` (comma-separated) and of the file ``<name>_FILE`` (one a line), blanks dropped."""
    entries = env.get(name, "").split(",")
    path = env.get(f"{name}_FILE")
    if path:
        with open(path, encoding="utf-8") as handle:
            entries.extend(handle)
    return [entry.strip() for entry in entries if entry.strip()]


def _ingest_keys(env: Mapping[str, str]) -> dict[str, object]:
    """``api_keys`` and ``group_keys`` from ``API_KEYS``/``API_KEYS_FILE``.

    An entry ``KEY`` or ``* KEY`` is valid for every group and sensor; ``GROUP KEY`` for that
    group (or ``/nuevo`` sensor id) only.

    >>> _ingest_keys({"API_KEYS": "k0, * k1, boiler-1 k2"})
    {'api_keys': ('k0', 'k1'), 'group_keys': {'boiler-1': ('k2',)}}
    """
    every: list[str] = []
    groups: dict[str, tuple[str, ...]] = {}
    for entry in _lines(env, "API_KEYS"):
        fields = entry.split()
        if len(fields) > 2 or (len(fields) == 2 and fields[0] != "*" and not re.fullmatch(SENSOR_PATTERN, fields[0])):
            raise ValueError("API_KEYS: each entry is KEY, * KEY or GROUP KEY")  # never echo a key
        if len(fields) == 1 or fields[0] == "*":
            every.append(fields[-1])
        else:
            groups[fields[0]] = (*groups.get(fields[0], ()), fields[1])
    return {"api_keys": tuple(every), "group_keys": groups}


def _admin_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """Admin keys (``PUT /api/v1/config``) from ``ADMIN_KEYS`` and ``ADMIN_KEYS_FILE``."""
    keys = _lines(env, "ADMIN_KEYS")
    if any(len(key.split()) != 1 for key in keys):
        raise ValueError("ADMIN_KEYS: one key per entry, without spaces")
    return tuple(keys)
