"""Settings are read once from the environment and secret files, and refuse bad values."""
from __future__ import annotations

import pytest

from webapp.config import PhysicalLimits
from webapp.config import Settings


def test_defaults_and_seed_variables():
    settings = Settings.from_env({"REDIS_HOST": "redis", "WINDOW_SIZE": "12", "THRESHOLD": "0.7",
                                  "MODEL_NAME": "lstm", "SERVING_HOST": "tf-serving"})
    assert settings.redis_url == "redis://redis:6379/0"
    assert (settings.window_size, settings.threshold, settings.model_name, settings.serving_host) == (
        12, 0.7, "lstm", "tf-serving")
    assert settings.vote_required == 3 and settings.retention_days == 3.0


def test_sentinels_and_secret_files(tmp_path):
    password = tmp_path / "redis_password"
    password.write_text("s3cret\n")
    keys = tmp_path / "api_keys"
    keys.write_text("key-a\n\nkey-b\n")
    settings = Settings.from_env({
        "REDIS_SENTINELS": "s1:26379, s2:26380", "REDIS_SENTINEL_MASTER": "main",
        "REDIS_PASSWORD_FILE": str(password), "API_KEYS": "key-c", "API_KEYS_FILE": str(keys),
    })
    assert settings.redis_sentinels == (("s1", 26379), ("s2", 26380))
    assert settings.redis_sentinel_master == "main"
    assert settings.redis_password == "s3cret"
    assert settings.api_keys == ("key-c", "key-a", "key-b")
    assert "s3cret" not in repr(settings)


def test_per_sensor_physical_limits():
    settings = Settings.from_env({"PHYSICAL_LIMITS": '{"high": 120}',
                                  "SENSOR_LIMITS": '{"oven": {"low": 0, "high": 400, "max_rate": 20}}'})
    assert settings.limits_for("any") == PhysicalLimits(high=120)
    assert settings.limits_for("oven") == PhysicalLimits(low=0, high=400, max_rate=20)


@pytest.mark.parametrize("env", [
    {"WINDOW_SIZE": "1"},
    {"WINDOW_SIZE": "ten"},
    {"VOTE_REQUIRED": "0"},
    {"RETENTION_DAYS": "0"},
    {"PHYSICAL_LIMITS": '{"low": 10, "high": 5}'},
    {"PHYSICAL_LIMITS": '{"max_rate": 0}'},
    {"PHYSICAL_LIMITS": '{"hgih": 5}'},
    {"PHYSICAL_LIMITS": '{"high": NaN}'},
    {"REDIS_SENTINELS": "no-port"},
])
def test_bad_values_stop_startup(env):
    with pytest.raises(ValueError):
        Settings.from_env(env)
