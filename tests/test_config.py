"""Settings are read once from the environment and secret files, and refuse bad values."""
from __future__ import annotations

import dataclasses
import re

import pytest
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from webapp import make_redis
from webapp.config import ENVIRONMENTS
from webapp.config import PhysicalLimits
from webapp.config import Settings

# A valid value other than the default, for the variables whose text is not a plain int, float or str.
SAMPLES = {"AEROGUARD_ENV": ("local", "local"), "INFERENCE_BACKEND": ("rest", "rest"),
           "REDIS_URL": ("redis://r:1/0", "redis://r:1/0"), "REDIS_SENTINELS": ("s:1", (("s", 1),)),
           "REDIS_CLUSTER_NODES": ("c1:7000,c2:7001", (("c1", 7000), ("c2", 7001))),
           "REDIS_PASSWORD": ("pw", "pw"), "ZK_AUTH": ("u:p", "u:p"), "THRESHOLD": ("0.5", 0.5),
           "CONFIG_URL_HOSTS": ("web", ("web",)), "ALERT_URLS": ("http://a", ("http://a",)),
           "API_KEYS": ("k, g1 k2", None), "ADMIN_KEYS": ("a", ("a",)),
           "PHYSICAL_LIMITS": ('{"high": 99}', PhysicalLimits(high=99)),
           "SENSOR_LIMITS": ('{"o": {"high": 99}}', {"o": PhysicalLimits(high=99)})}


def test_defaults_and_seed_variables():
    settings = Settings.from_env({"REDIS_HOST": "redis", "WINDOW_SIZE": "12", "THRESHOLD": "0.7",
                                  "MODEL_NAME": "lstm", "SERVING_HOST": "tf-serving"})
    assert settings.storage.redis_url == "redis://redis:6379/0"
    detection = settings.detection
    assert (detection.window_size, detection.threshold, detection.model_name, settings.inference.serving_host) == (
        12, 0.7, "lstm", "tf-serving")
    assert settings.detection.vote_required == 3 and settings.retention.retention_days == 3.0


def test_sentinels_and_secret_files(tmp_path):
    password = tmp_path / "redis_password"
    password.write_text("s3cret\n")
    keys = tmp_path / "api_keys"
    keys.write_text("key-a\n\nkey-b\n")
    settings = Settings.from_env({
        "REDIS_SENTINELS": "s1:26379, s2:26380", "REDIS_SENTINEL_MASTER": "main",
        "REDIS_PASSWORD_FILE": str(password), "API_KEYS": "key-c", "API_KEYS_FILE": str(keys),
    })
    assert settings.storage.redis_sentinels == (("s1", 26379), ("s2", 26380))
    assert settings.storage.redis_sentinel_master == "main"
    assert settings.storage.redis_password == "s3cret"
    assert settings.auth.api_keys == ("key-c", "key-a", "key-b")
    assert "s3cret" not in repr(settings)


def test_per_sensor_physical_limits():
    settings = Settings.from_env({"PHYSICAL_LIMITS": '{"high": 120}',
                                  "SENSOR_LIMITS": '{"oven": {"low": 0, "high": 400, "max_rate": 20}}'})
    assert settings.detection.limits_for("any") == PhysicalLimits(high=120)
    assert settings.detection.limits_for("oven") == PhysicalLimits(low=0, high=400, max_rate=20)


def test_every_field_names_its_variable_once_and_belongs_to_one_group():
    variables = list(Settings.variables())
    assert len(variables) >= 60
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", env) for _, _, env in variables)
    fields = [name for _, name, _ in variables]
    assert len(fields) == len(set(fields)), "Settings.replace finds a field by its name in any group"
    envs = [env for _, _, env in variables]
    assert [env for env in set(envs) if envs.count(env) > 1] == ["API_KEYS"]  # every group's keys, each group's
    assert {group for group, _, _ in variables} == {f.name for f in dataclasses.fields(Settings)}


def test_every_variable_is_read_into_its_field():
    """Each declared variable, set to a value other than its default, reaches its field."""
    defaults = Settings()
    for group, name, env in Settings.variables():
        default = getattr(getattr(defaults, group), name)
        if env in SAMPLES:
            text, expected = SAMPLES[env]
        elif isinstance(default, (int, float)):
            expected = default * 2 if isinstance(default, float) else default + 1
            text = str(expected)
        else:
            text = expected = f"{default}-x"
        value = getattr(getattr(Settings.from_env({env: text}), group), name)
        assert value != default and (expected is None or value == expected), env


def test_the_settings_once_hard_coded_keep_their_values_and_reach_the_redis_client():
    defaults = Settings()
    assert (defaults.storage.redis_retries, defaults.storage.redis_backoff_base_s, defaults.storage.redis_backoff_cap_s,
            defaults.storage.redis_health_check_s) == (2, 0.05, 0.5, 30)
    cluster = defaults.cluster
    assert (cluster.zk_timeout_s, cluster.zk_connect_max_delay_s, cluster.zk_command_retries,
            cluster.zk_command_max_delay_s) == (6.0, 2.0, 3, 1.0)
    alerts = defaults.alerts
    assert (alerts.alert_stream_max, alerts.alert_delivered_ttl_s, alerts.alert_retries, alerts.alert_backoff_s,
            alerts.alert_reclaim_s, alerts.incident_log_max, alerts.incident_sensor_log_max) == (
        10_000, 86_400, 3, 0.5, 15.0, 10_000, 100)
    assert defaults.limits.max_query_bytes == 2048
    tuned = Settings.from_env({"REDIS_RETRIES": "5", "REDIS_BACKOFF_BASE_S": "0.1", "REDIS_BACKOFF_CAP_S": "1",
                               "REDIS_HEALTH_CHECK_S": "7"})
    client = make_redis(tuned.storage)  # connects lazily: no server needed
    try:
        options = client.connection_pool.connection_kwargs
        assert options["retry"] == Retry(ExponentialBackoff(cap=1.0, base=0.1), 5)
        assert options["health_check_interval"] == 7
    finally:
        client.close()


def test_replace_finds_each_field_in_its_group():
    settings = Settings()
    changed = settings.replace(window_size=5, key_prefix="t:")
    assert (changed.detection.window_size, changed.storage.key_prefix) == (5, "t:")
    assert changed.alerts is settings.alerts and changed.detection.vote_required == settings.detection.vote_required
    with pytest.raises(TypeError, match="no_such_setting"):
        settings.replace(no_such_setting=1)
    with pytest.raises(ValueError, match="window_size"):
        settings.replace(window_size=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.detection.window_size = 3


@pytest.mark.parametrize("env", [
    {"WINDOW_SIZE": "1"},
    {"WINDOW_SIZE": "ten"},
    {"VOTE_REQUIRED": "0"},
    {"RETENTION_DAYS": "0"},
    {"PHYSICAL_LIMITS": '{"low": 10, "high": 5}'},
    {"PHYSICAL_LIMITS": '{"max_rate": 0}'},
    {"PHYSICAL_LIMITS": '{"hgih": 5}'},
    {"PHYSICAL_LIMITS": '{"high": NaN}'},
    {"PHYSICAL_LIMITS": "[1]"},
    {"SENSOR_LIMITS": '{"oven": {"lo": 0}}'},
    {"REDIS_SENTINELS": "no-port"},
    {"AEROGUARD_ENV": "staging"},
    {"INFERENCE_BACKEND": "carrier-pigeon"},
    {"ZK_AUTH": "no-password"},
    {"API_KEYS": "a b c"},
    {"ADMIN_KEYS": "two words"},
    {"MAX_SENSORS": "-1"},
    {"LIST_DEFAULT_COUNT": "20000"},
    {"REDIS_RETRIES": "-1"},
    {"REDIS_BACKOFF_BASE_S": "2"},
    {"ZK_TIMEOUT_S": "0"},
    {"ALERT_STREAM_MAX": "0"},
    {"ALERT_RETRIES": "many"},
    {"SERVING_GRPC_PORT": ""},
])
def test_bad_values_stop_startup(env):
    with pytest.raises(ValueError):
        Settings.from_env(env)


def test_a_value_that_does_not_parse_names_its_variable_and_the_environments_are_listed():
    with pytest.raises(ValueError, match="^ALERT_RETRIES: "):
        Settings.from_env({"ALERT_RETRIES": "many"})
    with pytest.raises(ValueError, match=", ".join(ENVIRONMENTS)):
        Settings.from_env({"AEROGUARD_ENV": "staging"})
