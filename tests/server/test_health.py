"""GET /healthz and the system checks for SSE deploy mistakes."""

import pytest
from django.core.cache import caches
from django.core.checks import run_checks

from tests.helpers import free_port


@pytest.mark.django_db
async def test_healthz_answers_200_when_everything_works(async_client):
    response = await async_client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "channel_layer", "redis_pools"}
    assert all(check["ok"] for check in body["checks"].values())
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
async def test_healthz_answers_503_and_names_the_broken_part(async_client, settings):
    closed = f"redis://127.0.0.1:{free_port()}/0"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": closed,
        }
    }

    response = await async_client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["cache"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert closed not in response.content.decode()


def _ids(**kwargs) -> set[str]:
    return {message.id for message in run_checks(**kwargs)}


def test_the_default_settings_pass_the_sse_checks():
    assert not {i for i in _ids() if i.startswith("streaming.")}


def test_a_buffering_middleware_is_an_error(settings):
    settings.MIDDLEWARE = [
        "django.middleware.gzip.GZipMiddleware",
        *settings.MIDDLEWARE,
    ]

    assert "streaming.E003" in _ids()


def test_wsgi_only_settings_are_an_error(settings):
    del settings.ASGI_APPLICATION
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "daphne"]

    assert {"streaming.E001", "streaming.W002"} <= _ids()


def test_the_deploy_check_warns_about_the_in_memory_channel_layer(settings):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }

    assert "streaming.W007" in _ids(include_deployment_checks=True)
    assert "streaming.W007" not in _ids()


@pytest.mark.parametrize(
    "removed",
    [
        "streaming.server.middleware.SecurityMiddleware",
        "streaming.server.middleware.XFrameOptionsMiddleware",
        "streaming.server.middleware.CsrfViewMiddleware",
    ],
)
def test_the_deploy_check_wants_the_protective_middleware(settings, removed):
    """Django's own check (silenced) looks for its exact paths; ours takes subclasses."""
    assert "streaming.W008" not in _ids(include_deployment_checks=True)

    settings.MIDDLEWARE = [path for path in settings.MIDDLEWARE if path != removed]

    assert "streaming.W008" in _ids(include_deployment_checks=True)


@pytest.mark.redis
@pytest.mark.django_db
async def test_healthz_answers_503_while_a_redis_pool_is_exhausted(
    async_client, settings, redis_url
):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "OPTIONS": {
                "pool_class": "streaming.pools.CachePool",
                "max_connections": 2,
                "timeout": 0.2,
            },
        }
    }
    pool = caches["default"]._cache.get_client(write=True).connection_pool
    held = [pool.get_connection() for _ in range(2)]

    exhausted = await async_client.get("/healthz")
    for connection in held:
        pool.release(connection)
    recovered = await async_client.get("/healthz")

    assert exhausted.status_code == 503
    check = exhausted.json()["checks"]["redis_pools"]
    assert (check["ok"], check["error"], check["exhausted"]) == (
        False,
        "exhausted",
        ["cache"],
    )
    assert check["pools"]["cache"]["in_use"] >= 2
    assert exhausted.json()["checks"]["cache"]["ok"] is False
    assert recovered.status_code == 200
    assert recovered.json()["checks"]["redis_pools"]["ok"] is True
