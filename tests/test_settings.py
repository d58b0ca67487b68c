"""The settings module and .env.example agree, and the example is safe to copy."""

import os
import re
import subprocess
import sys

from tests.helpers import BASE_DIR

SETTINGS = (BASE_DIR / "config" / "settings.py").read_text()
EXAMPLE = (BASE_DIR / ".env.example").read_text()


def test_every_variable_the_settings_read_is_in_the_example():
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]*)"', SETTINGS))
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", EXAMPLE, re.MULTILINE))

    assert read, "no env() calls found"
    assert read - listed == set()
    assert listed - read == set()


def test_the_example_as_an_environment_runs_with_defaults():
    example = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", EXAMPLE, re.MULTILINE))
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS} | example
    env.pop("DATABASE_URL", None)

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def _settings_with(**env: str) -> subprocess.CompletedProcess:
    show = (
        "from django.conf import settings as s; "
        "print(s.CACHES['default']['BACKEND'], s.CACHES['default']['LOCATION'], "
        "s.CHANNEL_LAYERS['default']['CONFIG']['hosts'])"
    )
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {show}"],
        cwd=BASE_DIR,
        env=os.environ | {"DJANGO_SETTINGS_MODULE": "config.settings"} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_redis_url_may_name_several_servers_and_each_gets_a_share():
    urls = "redis://10.0.0.1:6379/0, redis://10.0.0.2:6379/0"

    result = _settings_with(REDIS_URL=urls)

    assert result.returncode == 0, result.stderr
    servers = "['redis://10.0.0.1:6379/0', 'redis://10.0.0.2:6379/0']"
    # Not Django's RedisCache, which reads a list as a primary and its replicas.
    assert result.stdout.split(" ", 1) == [
        "streaming.shards.ShardedRedisCache",
        f"{servers} {servers}\n",
    ]


def test_a_redis_url_that_is_not_one_fails_loudly():
    for bad in ("10.0.0.1:6379", "redis://a:6379/0,redis://a:6379/0"):
        result = _settings_with(REDIS_URL=bad)

        assert result.returncode != 0
        assert "ImproperlyConfigured" in result.stderr and "REDIS_URL" in result.stderr
