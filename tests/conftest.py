"""Fixtures that build on each other: a cast of users and their API tokens and logs,
the fake provider, and the relay itself under a real daphne on the test database.

The relay runs in a subprocess, so the tests that talk to it use `transactional_db`
(the `relay` and `start_relay` fixtures request it): it sees only committed rows.
"""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import anthropic
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.db import connection, connections
from django.utils.crypto import get_random_string

from streaming.models import ApiToken, StreamLog
from tests.helpers import (
    BASE_DIR,
    LOGS,
    FakeProvider,
    RedisServer,
    Relay,
    database_url,
    environ_without,
    log_since,
    register_log,
)

# Random per session, so finding it anywhere in a response means it leaked.
PROVIDER_KEY = f"sk-test-{uuid.uuid4().hex}"
CI = os.environ.get("CI") == "true"

_LOG_MARKS = pytest.StashKey[dict]()
_NO_REDIS = "needs Redis: set REDIS_URL (e.g. redis://127.0.0.1:6379/0)"


# --------------------------------------------------------------------------- hooks


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if CI and report.skipped and not hasattr(report, "wasxfail"):
        # A green CI run must mean that everything ran: a missing service fails.
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        report.outcome = "failed"
        report.longrepr = f"skipped, which CI=true does not allow: {reason}"
    if report.failed and report.when == "call":
        marks = item.stash.get(_LOG_MARKS, {})
        for name, path in LOGS:
            text = log_since(path, marks.get(path, 0))
            if text.strip():
                report.sections.append((f"{name} output", text[-8000:]))
    return report


def pytest_configure(config: pytest.Config) -> None:
    if not any(line.startswith("redis:") for line in config.getini("markers")):
        config.addinivalue_line("markers", "redis: needs Redis (REDIS_URL)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("redis") and not os.environ.get("REDIS_URL"):
        pytest.skip(_NO_REDIS)


@pytest.fixture(autouse=True)
def _no_limits(settings) -> None:
    """Limits get their own tests; elsewhere they must not get in the way."""
    settings.LIMIT_CONCURRENT_STREAMS = 1000
    settings.LIMIT_STARTS_PER_MINUTE = 100_000
    settings.LIMIT_TOKENS_PER_DAY = 0
    settings.LIMIT_VIEWERS_PER_USER = 0
    settings.LOGIN_THROTTLE_ATTEMPTS = 1000
    settings.LOGIN_THROTTLE_ADDRESS_ATTEMPTS = 100_000
    # In-process hubs must not reap the rows tests build (the lease tests call the
    # reaper themselves, and relays under test run their own).
    settings.STREAM_LEASE_SECONDS = 10**9


# Redis keys and channel groups of this session only: Redis outlives the test
# database, whose stream and user ids start again in every session.
SESSION_PREFIX = f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session", autouse=True)
def _session_redis_prefix() -> None:
    settings.REDIS_PREFIX = SESSION_PREFIX  # the frame log's keys
    # The cache's: caches made from now on (one per thread), and this thread's.
    settings.CACHES["default"]["KEY_PREFIX"] = SESSION_PREFIX
    caches["default"].key_prefix = SESSION_PREFIX


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """This process's cache holds tokens and limits by id, and SQLite hands a rolled
    back test's ids out again. (Redis is shared with the relays, and PostgreSQL never
    reuses an id: left alone.)"""
    if isinstance(caches["default"], LocMemCache):
        caches["default"].clear()


@pytest.fixture(autouse=True)
def _mark_logs(request: pytest.FixtureRequest) -> None:
    """Remember where each subprocess log stood, to show what this test added."""
    request.node.stash[_LOG_MARKS] = {path: path.stat().st_size for _, path in LOGS}


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    yield
    # Async tests query from asgiref's worker thread, whose connection would keep
    # PostgreSQL from dropping the test database.
    asyncio.run(sync_to_async(connections.close_all)())


# --------------------------------------------------------------------------- cast


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.com")


@pytest.fixture
def charlie(django_user_model):
    """Charlie is staff with the permissions to watch and stop anyone's stream."""
    user = django_user_model.objects.create_user(
        "charlie", "charlie@example.com", is_staff=True
    )
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="streaming",
            codename__in=["view_streamlog", "stop_streamlog"],
        )
    )
    return user


@pytest.fixture
def dave(django_user_model):
    """Dave is staff without any permission: other users' streams are not his."""
    return django_user_model.objects.create_user(
        "dave", "dave@example.com", is_staff=True
    )


@pytest.fixture
def make_token():
    """`make_token(user, **fields)` saves an API token and returns its raw secret."""

    def make(user, **fields) -> str:
        fields.setdefault("name", "tests")
        token = ApiToken(user=user, **fields)
        raw = token.generate()
        token.save()
        return raw

    return make


@pytest.fixture
def alice_token(alice, make_token) -> str:
    return make_token(alice)


@pytest.fixture
def bob_token(bob, make_token) -> str:
    return make_token(bob)


@pytest.fixture
def charlie_token(charlie, make_token) -> str:
    return make_token(charlie)


@pytest.fixture
def dave_token(dave, make_token) -> str:
    return make_token(dave)


@pytest.fixture
def make_log():
    """`make_log(user, **fields)` saves a stream log, finished unless told otherwise."""

    def make(user, **fields) -> StreamLog:
        fields.setdefault("provider", "demo")
        fields.setdefault("model", "demo")
        fields.setdefault("prompt", "Say hello")
        fields.setdefault("response", "Hello!")
        fields.setdefault("status", StreamLog.Status.COMPLETED)
        return StreamLog.objects.create(user=user, **fields)

    return make


@pytest.fixture
def alice_log(alice, make_log) -> StreamLog:
    return make_log(alice, prompt="Say hello to Alice", response="Hello, Alice!")


@pytest.fixture
def alice_cookies(alice, client) -> dict[str, str]:
    """The cookies of Alice's logged-in browser, with a CSRF token under "csrftoken"
    (send it back in X-CSRFToken)."""
    client.force_login(alice)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    return {
        settings.SESSION_COOKIE_NAME: session,
        settings.CSRF_COOKIE_NAME: get_random_string(32),
    }


# --------------------------------------------------------------------------- services


@pytest.fixture(scope="session")
def provider_server(tmp_path_factory):
    """The fake OpenAI/Anthropic server, requiring PROVIDER_KEY."""
    server = FakeProvider(tmp_path_factory.mktemp("provider"), api_key=PROVIDER_KEY)
    register_log("fake provider", server.log_path)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def provider_key() -> str:
    """The key the relays give both SDKs; it must never reach a client."""
    return PROVIDER_KEY


@pytest.fixture(scope="session")
def anthropic_server(provider_server, tmp_path_factory):
    """The fake server the Anthropic SDK talks to.

    The fake provider checks an Anthropic key in `x-api-key`, while anthropic 2.x sends
    it as `Authorization: Bearer`; unless the keyed server accepts what the SDK sends,
    Anthropic traffic goes to a second fake that checks no key.
    """
    if _accepts_anthropic_sdk(provider_server):
        yield provider_server
        return
    server = FakeProvider(tmp_path_factory.mktemp("provider"), api_key=None)
    register_log("fake provider (anthropic)", server.log_path)
    yield server
    server.stop()


def _accepts_anthropic_sdk(server: FakeProvider) -> bool:
    with anthropic.Anthropic(
        api_key=PROVIDER_KEY, base_url=server.url, max_retries=0, timeout=5
    ) as probe:
        try:
            probe.messages.create(
                model="probe",
                max_tokens=1,
                messages=[{"role": "user", "content": "[fake?tokens=1]"}],
            )
        except anthropic.AuthenticationError:
            return False
    return True


@pytest.fixture(scope="session")
def upstream(provider_server, anthropic_server) -> dict[str, FakeProvider]:
    """The fake server behind each provider name."""
    return {"openai": provider_server, "anthropic": anthropic_server}


@pytest.fixture(scope="session")
def redis_url() -> str:
    """REDIS_URL, for tests that need Redis; they skip without it, or fail when
    CI=true. Marking a test `@pytest.mark.redis` does the same."""
    url = os.environ.get("REDIS_URL", "")
    if not url:
        pytest.skip(_NO_REDIS)
    return url


@pytest.fixture(scope="session")
def static_root(tmp_path_factory) -> Path:
    """STATIC_ROOT as `manage.py collectstatic` fills it in production (DEBUG off:
    hashed names, compressed copies), once per session for every relay."""
    root = tmp_path_factory.mktemp("static")
    env = environ_without("DJANGO_", "PYTEST_", "DATABASE_URL", "REDIS_URL")
    env.update(DEBUG="false", SECRET_KEY=settings.SECRET_KEY, STATIC_ROOT=str(root))
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env=env,
        check=True,
    )
    return root


@pytest.fixture
def private_redis(tmp_path, redis_url) -> RedisServer:
    """A redis-server of this test's own, which it may kill and restart."""
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def redis_shards(tmp_path, redis_url) -> list[RedisServer]:
    """Two redis-servers of this test's own, for REDIS_URL to name both."""
    servers = [RedisServer(tmp_path), RedisServer(tmp_path)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def relay_env(
    django_db_setup, provider_server, anthropic_server, static_root
) -> dict[str, str]:
    """The environment of a relay process: the test database, the fake providers,
    no SDK retries, a 1 s stall timeout, a 1 s orphan grace and collected static files.

    REDIS_URL passes through when set, so the relays share a Redis channel layer.
    """
    env = environ_without(
        "OPENAI_",
        "ANTHROPIC_",
        "DEMO_",
        "PROVIDER_",
        "STREAM_",
        "SSE_",
        "DEFAULT_PROVIDER",
        "DATABASE_URL",
        "DJANGO_",
        "PYTEST_",
    )
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url(connection.settings_dict),
        SECRET_KEY=settings.SECRET_KEY,  # so sessions made by the tests are valid
        DEBUG="false",
        STATIC_ROOT=str(static_root),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="INFO",
        OPENAI_API_KEY=PROVIDER_KEY,
        OPENAI_BASE_URL=provider_server.openai_base_url,
        ANTHROPIC_API_KEY=PROVIDER_KEY,
        ANTHROPIC_BASE_URL=anthropic_server.anthropic_base_url,
        DEMO_PROVIDER="true",
        DEMO_TOKEN_DELAY_MS="1",
        PROVIDER_MAX_RETRIES="0",
        PROVIDER_STALL_TIMEOUT_SECONDS="1",
        PROVIDER_CONNECT_TIMEOUT_SECONDS="5",
        STREAM_ORPHAN_GRACE_SECONDS="1",
        STREAM_CHECKPOINT_SECONDS="0.2",
        # Relays live for the whole session on the shared test database: their lease
        # reaper must not end rows other tests build (the lease tests set their own).
        STREAM_LEASE_SECONDS="3600",
        SSE_HEARTBEAT_SECONDS="15",
        # Production settings, served over plain HTTP on loopback.
        SECURE_SSL_REDIRECT="false",
        SECURE_HSTS_SECONDS="0",
        # Keys and channel groups of this session only, whoever else uses the Redis.
        REDIS_PREFIX=SESSION_PREFIX,
        # Limits get their own tests; elsewhere they must not get in the way.
        LIMIT_CONCURRENT_STREAMS="1000",
        LIMIT_STARTS_PER_MINUTE="100000",
        LIMIT_TOKENS_PER_DAY="0",
        LIMIT_VIEWERS_PER_USER="0",
    )
    return env


@pytest.fixture(scope="session")
def relay_factory(relay_env, tmp_path_factory):
    """`start(*serve_args, instance="a", **env)`: a relay with extra options of
    `manage.py serve` and extra env, started once per session for each distinct
    (instance, options, env); another `instance` is another process."""
    relays: dict[tuple, Relay] = {}
    directory = tmp_path_factory.mktemp("relay")

    def start(*serve_args: str, instance: str = "a", **env: object) -> Relay:
        extra = {name: str(value) for name, value in env.items()}
        key = (instance, serve_args, tuple(sorted(extra.items())))
        if key not in relays:
            log_path = directory / f"relay-{len(relays)}.log"
            relays[key] = Relay(relay_env | extra, log_path, serve_args)
            label = " ".join([instance, *serve_args, str(extra or "")])
            register_log(f"relay {label}".strip(), log_path)
        return relays[key]

    yield start
    for relay in relays.values():
        relay.terminate()
    for relay in relays.values():
        relay.stop()


@pytest.fixture
def start_relay(relay_factory, transactional_db):
    """`start_relay(*serve_args, **env)` -> a running relay; see `relay_factory`."""
    return relay_factory


@pytest.fixture
def relay(start_relay) -> Relay:
    """The relay with the default test environment."""
    return start_relay()
