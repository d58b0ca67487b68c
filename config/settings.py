"""Settings for the streaming relay, read from the environment (see .env.example).

With no environment at all the service runs on SQLite, the in-memory channel layer
and the offline demo provider. Production differs only by environment variables.
"""

import json
from decimal import Decimal
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set SECRET_KEY when DEBUG is off.")
    SECRET_KEY = "dev-only-insecure-key-set-SECRET_KEY-in-production"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # daphne first, so `runserver` serves ASGI and streams are never drained by WSGI
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "corsheaders",
    "streaming",
]

# No GZipMiddleware: it would buffer or compress the event stream.
# Django's own middleware, as subclasses whose hooks run on the event loop instead of
# a thread each (streaming/server/middleware.py): a dozen thread trips less per request.
MIDDLEWARE = [
    "streaming.server.middleware.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "streaming.server.middleware.content_security_policy",
    "streaming.server.middleware.SessionMiddleware",
    "streaming.server.middleware.CommonMiddleware",
    "streaming.server.middleware.unreadable_body",
    "streaming.server.middleware.CsrfViewMiddleware",
    "streaming.server.middleware.AuthenticationMiddleware",
    "streaming.server.middleware.MessageMiddleware",
    "streaming.server.middleware.XFrameOptionsMiddleware",
    "streaming.server.middleware.ServicesUnavailable",
]

# The API's URLs: every error there is our JSON error, also where no view answers
# (streaming/server/handlers.py).
# A prefix match: a path may hold a newline (`/streams/%0A/events`), which `.` would not.
API_URLS_REGEX = r"^/(chat/stream|streams/|api/|v1/)"

# CORS is off unless origins are listed; then only the API answers them (programs on
# another origin use a token: EventSource across origins cannot send one).
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = API_URLS_REGEX

# Production (DEBUG off) gets secure cookies, HTTPS redirects and HSTS, so that
# `manage.py check --deploy` is clean. Behind a TLS proxy, set SECURE_PROXY_SSL_HEADER.
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True
)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Load balancers probe /healthz over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Preloading HSTS is a commitment to submit the domain to browsers' lists; opt in
# with SECURE_HSTS_PRELOAD=true rather than have the deploy check push it.
# W001-W003 look for Django's middleware by exact path; the subclasses we install
# instead (see MIDDLEWARE) are checked by streaming.W008.
SILENCED_SYSTEM_CHECKS = [
    "security.W021",
    "security.W001",
    "security.W002",
    "security.W003",
]

# Failed logins allowed in LOGIN_THROTTLE_WINDOW_SECONDS per (username, client address)
# pair, and per address (higher: many people may share one).
LOGIN_THROTTLE_ATTEMPTS = env.int("LOGIN_THROTTLE_ATTEMPTS", default=5)
LOGIN_THROTTLE_ADDRESS_ATTEMPTS = env.int("LOGIN_THROTTLE_ADDRESS_ATTEMPTS", default=50)
LOGIN_THROTTLE_WINDOW_SECONDS = env.int("LOGIN_THROTTLE_WINDOW_SECONDS", default=900)

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
}
# Request threads come from a pool (streaming/server/asgi.py), so a connection kept between
# requests is reused, never leaked. PostgreSQL uses its connection pool instead, and
# requires 0. Streaming responses give theirs back before they start; generation tasks
# share one worker thread that keeps its connection and reconnects when it goes stale.
_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
DATABASES["default"]["CONN_MAX_AGE"] = env.int(
    "CONN_MAX_AGE", default=0 if _POSTGRES else 600
)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Request threads for Django's synchronous work (ORM queries), shared once all are
# lent (streaming/server/asgi.py). PostgreSQL connections come from the pool below.
REQUEST_THREADS = env.int("REQUEST_THREADS", default=8)
if _POSTGRES:
    # A bounded pool: a burst of requests waits for a connection instead of opening
    # hundreds, and open streams hold none (the views hand theirs back first).
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DATABASE_POOL_SIZE", default=10),
        "timeout": env.float("DATABASE_POOL_TIMEOUT_SECONDS", default=20),
        # Once a max_idle, the pool closes one connection unused all that time, down
        # to min_size: a burst's connections go back within (size - 1) x max_idle.
        # psycopg_pool's default (10 minutes) kept them for up to an hour and a half,
        # and another process (manage.py) could not connect under a role's limit.
        "max_idle": env.float("DATABASE_POOL_MAX_IDLE_SECONDS", default=10),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so a daphne process started by the tests sees the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test-db.sqlite3")}
    # WAL: readers do not wait for the writer, and a commit needs no fsync of its own
    # (synchronous=NORMAL; a power cut may lose the last commits, never corrupt).
    # A page cache of 64 KiB per connection, not SQLite's 2 MB: reading any column of
    # a stream row after its answer walks the answer's chain of overflow pages through
    # the cache, so each request thread that looked up a long finished answer kept 2 MB
    # (docs/bench/stalled-viewers.md). The OS caches the file; a lookup costs ~2 µs more.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                "PRAGMA cache_size=-64;"
            ),
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
# One redis:// URL, or several, comma separated: then every key, and every channel
# group, lives on one of them, each stream's all on the same one (streaming/shards.py).
REDIS_URLS = [url.strip() for url in REDIS_URL.split(",") if url.strip()]
if any(not url.startswith(("redis://", "rediss://", "unix://")) for url in REDIS_URLS):
    raise ImproperlyConfigured(
        "REDIS_URL is a redis:// (rediss://, unix://) URL, or several, comma separated."
    )
if len(set(REDIS_URLS)) < len(REDIS_URLS):
    raise ImproperlyConfigured("REDIS_URL names a server twice.")
# Prefix of every Redis key and channel this deployment uses (to share one Redis).
REDIS_PREFIX = env.str("REDIS_PREFIX", default="relay")
# channels-redis offers two layers: "pubsub" (Redis pub/sub, about 0.3 ms of CPU a
# message here) and "core" (Redis sorted sets with a per-channel capacity, about
# 1.6-2 ms). Both are at-most-once; the hub replays whatever either loses.
REDIS_CHANNEL_LAYER = env.str("REDIS_CHANNEL_LAYER", default="pubsub")
_LAYERS = {
    # channels-redis's, each stream's groups on the shard of its keys; the core
    # layer's on waiting pools
    "pubsub": "streaming.pools.RedisPubSubChannelLayer",
    "core": "streaming.pools.RedisChannelLayer",
}
# Each Redis pool (the cache's, the frame log's, the core layer's) holds at most
# REDIS_POOL_SIZE connections per process; a caller that finds them all in use waits
# up to REDIS_POOL_TIMEOUT_SECONDS for one instead of failing (streaming/pools.py).
REDIS_POOL_SIZE = env.int("REDIS_POOL_SIZE", default=50)
REDIS_POOL_TIMEOUT_SECONDS = env.float("REDIS_POOL_TIMEOUT_SECONDS", default=5)
if REDIS_URL:
    if REDIS_CHANNEL_LAYER not in _LAYERS:
        raise ImproperlyConfigured("REDIS_CHANNEL_LAYER must be 'pubsub' or 'core'.")
    _layer_config = {"hosts": REDIS_URLS, "prefix": REDIS_PREFIX}
    if REDIS_CHANNEL_LAYER == "core":
        _layer_config["capacity"] = env.int("REDIS_CHANNEL_CAPACITY", default=100)
    CHANNEL_LAYERS = {
        "default": {"BACKEND": _LAYERS[REDIS_CHANNEL_LAYER], "CONFIG": _layer_config}
    }
    CACHES = {
        "default": {
            # Not Django's RedisCache: it reads several servers as replicas of one.
            "BACKEND": "streaming.shards.ShardedRedisCache",
            "LOCATION": REDIS_URLS,
            "KEY_PREFIX": REDIS_PREFIX,
            "OPTIONS": {
                "pool_class": "streaming.pools.CachePool",
                "max_connections": REDIS_POOL_SIZE,
                "timeout": REDIS_POOL_TIMEOUT_SECONDS,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# `manage.py collectstatic` fills it; with DEBUG off the app serves it (config/asgi.py).
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
if not DEBUG:
    # Hashed names, gzip and Brotli copies (streaming/server/staticfiles.py). In
    # development the files are served unhashed from static/, with no collectstatic.
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "streaming.server.staticfiles.Storage"},
    }

# Providers. One stays off until its key is set; the demo needs none.
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="") or None
OPENAI_MODEL = env.str("OPENAI_MODEL", default="gpt-4o-mini")
OPENAI_MODELS = env.list("OPENAI_MODELS", default=[OPENAI_MODEL])
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="") or None
ANTHROPIC_MODEL = env.str("ANTHROPIC_MODEL", default="claude-sonnet-4-5")
ANTHROPIC_MODELS = env.list("ANTHROPIC_MODELS", default=[ANTHROPIC_MODEL])
DEMO_PROVIDER = env.bool("DEMO_PROVIDER", default=True)
DEMO_TOKEN_DELAY_MS = env.int("DEMO_TOKEN_DELAY_MS", default=35)
DEFAULT_PROVIDER = env.str("DEFAULT_PROVIDER", default="")

# The system prompt of the chat page, /streams/ and /chat/stream (none by default).
# The OpenAI-compatible API sends only the system messages its clients send.
SYSTEM_PROMPT = env.str("SYSTEM_PROMPT", default="") or None

# The output limit sent with each request: by model first ("model=tokens,..."), then
# MAX_OUTPUT_TOKENS; 0 sends none (the model's own maximum), except to Anthropic,
# which requires one: ANTHROPIC_MAX_TOKENS.
MAX_OUTPUT_TOKENS = env.int("MAX_OUTPUT_TOKENS", default=0)


def _tokens_by_model(name: str, value: str) -> dict[str, int]:
    pairs = [item.rpartition("=") for item in value.split(",") if item.strip()]
    if not all(
        model.strip() and tokens.strip().isdigit() for model, _, tokens in pairs
    ):
        raise ImproperlyConfigured(
            f"{name} is a list of model=tokens, comma separated."
        )
    return {model.strip(): int(tokens) for model, _, tokens in pairs}


MAX_OUTPUT_TOKENS_BY_MODEL = _tokens_by_model(
    "MAX_OUTPUT_TOKENS_BY_MODEL", env.str("MAX_OUTPUT_TOKENS_BY_MODEL", default="")
)
ANTHROPIC_MAX_TOKENS = env.int("ANTHROPIC_MAX_TOKENS", default=16384)
# Anthropic's extended thinking, per model ("model=budget_tokens,..."; none by
# default): those models think first, with up to that many tokens, beyond their
# output limit. Their thinking is relayed as reasoning.
ANTHROPIC_THINKING_BUDGET_BY_MODEL = _tokens_by_model(
    "ANTHROPIC_THINKING_BUDGET_BY_MODEL",
    env.str("ANTHROPIC_THINKING_BUDGET_BY_MODEL", default=""),
)
if any(budget < 1024 for budget in ANTHROPIC_THINKING_BUDGET_BY_MODEL.values()):
    raise ImproperlyConfigured(
        "ANTHROPIC_THINKING_BUDGET_BY_MODEL: Anthropic takes budgets of 1024 tokens "
        "or more."
    )
# OpenAI's current models take max_completion_tokens; older OpenAI-compatible servers
# (vLLM, llama.cpp, ...) may know only max_tokens.
OPENAI_MAX_TOKENS_PARAM = env.str(
    "OPENAI_MAX_TOKENS_PARAM", default="max_completion_tokens"
)
if OPENAI_MAX_TOKENS_PARAM not in ("max_completion_tokens", "max_tokens"):
    raise ImproperlyConfigured(
        "OPENAI_MAX_TOKENS_PARAM must be 'max_completion_tokens' or 'max_tokens'."
    )
PROVIDER_MAX_RETRIES = env.int("PROVIDER_MAX_RETRIES", default=2)
PROVIDER_RETRY_BASE_SECONDS = env.float("PROVIDER_RETRY_BASE_SECONDS", default=0.5)
PROVIDER_RETRY_MAX_WAIT_SECONDS = env.float(
    "PROVIDER_RETRY_MAX_WAIT_SECONDS", default=8
)
PROVIDER_RETRY_BUDGET_SECONDS = env.float("PROVIDER_RETRY_BUDGET_SECONDS", default=20)
PROVIDER_CONNECT_TIMEOUT_SECONDS = env.float(
    "PROVIDER_CONNECT_TIMEOUT_SECONDS", default=10
)
PROVIDER_STALL_TIMEOUT_SECONDS = env.float("PROVIDER_STALL_TIMEOUT_SECONDS", default=60)
# The SDKs' HTTP transport: "aiohttp" (their documented DefaultAioHttpClient, the
# `aiohttp` extra: less CPU per token than httpx in bench/) or "httpx" (their default).
PROVIDER_HTTP_CLIENT = env.str("PROVIDER_HTTP_CLIENT", default="aiohttp")

# Per-user limits (overridable per user in the admin); counters live in the cache.
LIMIT_CONCURRENT_STREAMS = env.int("LIMIT_CONCURRENT_STREAMS", default=3)
LIMIT_STARTS_PER_MINUTE = env.int("LIMIT_STARTS_PER_MINUTE", default=20)
LIMIT_TOKENS_PER_DAY = env.int("LIMIT_TOKENS_PER_DAY", default=200_000)
# Viewers one user may have open in one process (0: no cap); a browser opens one.
LIMIT_VIEWERS_PER_USER = env.int("LIMIT_VIEWERS_PER_USER", default=100)


# The cost of a user's streams per UTC day, in the currency of MODEL_PRICES; 0: none.
def _amount(name: str, value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except ArithmeticError:  # not a number
        amount = Decimal("NaN")
    if not amount.is_finite() or amount < 0:
        raise ImproperlyConfigured(f"{name} is an amount >= 0, e.g. 5 or 2.50.")
    return amount


LIMIT_COST_PER_DAY = _amount(
    "LIMIT_COST_PER_DAY", env.str("LIMIT_COST_PER_DAY", default="0")
)

# What each model costs, per million tokens, as JSON: {"model": {"input": 3,
# "cached_input": 0.3, "cache_write": 3.75, "output": 15}}. input and output are
# required; a cached_input or cache_write left out costs what input does. A model
# not listed has no cost (accounting.costs).
_PRICE_KINDS = ("input", "cached_input", "cache_write", "output")


def _prices(value: str) -> dict[str, dict[str, Decimal]]:
    problem = ImproperlyConfigured(
        'MODEL_PRICES is JSON: {"model": {"input": 3, "output": 15}, ...}, with'
        " cached_input and cache_write optional; prices per million tokens, >= 0."
    )
    try:
        table = json.loads(value, parse_float=Decimal, parse_int=Decimal)
    except ValueError:
        raise problem from None
    if not isinstance(table, dict):
        raise problem
    prices = {}
    for model, price in table.items():
        if (
            not isinstance(price, dict)
            or not {"input", "output"} <= price.keys() <= set(_PRICE_KINDS)
            or not all(isinstance(v, Decimal) and v >= 0 for v in price.values())
        ):
            raise problem
        prices[model] = {
            "cached_input": price["input"],
            "cache_write": price["input"],
            **price,
        }
    return prices


MODEL_PRICES = _prices(env.str("MODEL_PRICES", default="{}"))

# Streams.
MAX_PROMPT_CHARS = env.int("MAX_PROMPT_CHARS", default=32_000)
MAX_CONTEXT_MESSAGES = env.int("MAX_CONTEXT_MESSAGES", default=20)
MAX_CONTEXT_CHARS = env.int("MAX_CONTEXT_CHARS", default=48_000)
SSE_HEARTBEAT_SECONDS = env.float("SSE_HEARTBEAT_SECONDS", default=15)
SSE_RETRY_MS = env.int("SSE_RETRY_MS", default=2000)
STREAM_ORPHAN_GRACE_SECONDS = env.float("STREAM_ORPHAN_GRACE_SECONDS", default=30)
# A viewer whose connection takes nothing this long is dropped (it can resume).
STREAM_VIEWER_STALL_SECONDS = env.float("STREAM_VIEWER_STALL_SECONDS", default=30)
STREAM_CHECKPOINT_SECONDS = env.float("STREAM_CHECKPOINT_SECONDS", default=5)
STREAM_FANOUT_WINDOW_MS = env.int("STREAM_FANOUT_WINDOW_MS", default=25)
STREAM_LEASE_SECONDS = env.float("STREAM_LEASE_SECONDS", default=30)
STREAM_DRAIN_SECONDS = env.float("STREAM_DRAIN_SECONDS", default=20)
STREAM_FINAL_WRITE_SECONDS = env.float("STREAM_FINAL_WRITE_SECONDS", default=16)
# With REDIS_URL: each stream's text in Redis (`streaming/relay/framelog.py`).
STREAM_LOG_INTERVAL_MS = env.int("STREAM_LOG_INTERVAL_MS", default=250)
STREAM_LOG_TTL_SECONDS = env.int("STREAM_LOG_TTL_SECONDS", default=3600)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "streaming": {"level": env.str("LOG_LEVEL", default="INFO"), "propagate": True},
        # The SDKs log request URLs and retries at INFO/DEBUG; keep them quiet.
        "openai": {"level": "WARNING"},
        "anthropic": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
