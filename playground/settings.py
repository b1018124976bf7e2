"""Settings for Omni Playground, read from the environment with safe defaults.

A bad value stops start-up with a message that names the variable.
"""

import importlib.util
import ipaddress
import json
import logging
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envstr(name: str, default: str) -> str:
    """The variable's value; unset and empty both mean the default."""
    return os.getenv(name) or default


def envbool(name: str, default: str) -> bool:
    value = envstr(name, default).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def envfloat(name: str, default: str, minimum: float = 0.0) -> float:
    value = envstr(name, default)
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value!r}")
    return number


def envint(name: str, default: str, minimum: int = 0) -> int:
    value = envstr(name, default)
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value!r}")
    return number


def envurl(name: str, default: str) -> str:
    value = envstr(name, default).strip()
    if not value.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL, not {value!r}")
    return value.rstrip("/")


DATA_DIR = Path(envstr("PLAYGROUND_DATA_DIR", str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = envbool("DJANGO_DEBUG", "false")


def _secret_key() -> str:
    """Use DJANGO_SECRET_KEY, or a random key kept in the data dir so sessions survive restarts."""
    if key := os.getenv("DJANGO_SECRET_KEY"):
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        from django.core.management.utils import get_random_secret_key

        path.write_text(get_random_secret_key())
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = [
    h.strip()
    for h in envstr("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if h.strip()
]
# A wildcard would let any Host header through, and the host is what a page's own links and
# Django's redirects are made of.
if any("*" in host for host in ALLOWED_HOSTS):
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS must list the host names people use to reach the site "
        "(e.g. chat.example.com,localhost), not '*'"
    )
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in envstr("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]


def _networks(name: str) -> list[str]:
    """Comma-separated IP addresses or CIDR networks, as networks ('10.0.0.5' -> '10.0.0.5/32')."""
    networks = []
    for part in envstr(name, "").split(","):
        if not part.strip():
            continue
        try:
            network = ipaddress.ip_network(part.strip(), strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must be IP addresses or networks separated by commas "
                f"(e.g. 172.28.0.10,10.1.0.0/16), not {part.strip()!r}"
            ) from None
        if network.prefixlen == 0:
            raise ImproperlyConfigured(f"{name} must not trust every address ({part.strip()!r})")
        networks.append(str(network))
    return networks


# Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (playground.middleware
# .ClientAddress): from any other peer those headers are dropped before anything reads them.
PLAYGROUND_TRUSTED_PROXIES = _networks("PLAYGROUND_TRUSTED_PROXIES")

INSTALLED_APPS = [
    "daphne",  # before staticfiles, so runserver is the ASGI server
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "chat",
]

MIDDLEWARE = [
    # First: the client's address (and scheme) from a trusted proxy, or no forwarded headers.
    "playground.middleware.ClientAddress",
    # Django's own, run on the event loop where they do no I/O (see playground/middleware.py).
    "playground.middleware.Security",
    "playground.middleware.StaticFiles",
    # After static files (WhiteNoise has its own compressed copies), before the rest, so it
    # compresses what they leave (PLAYGROUND_COMPRESS).
    "playground.middleware.Compression",
    "playground.middleware.Session",
    # Before anything that renders; after the session, so a log-in's kept language is seen.
    "playground.middleware.Locale",
    "playground.middleware.Common",
    "playground.middleware.Csrf",
    "playground.middleware.Authentication",
    "playground.middleware.Messages",
    "playground.middleware.XFrameOptions",
    "playground.middleware.ContentSecurityPolicy",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "playground.urls"
ASGI_APPLICATION = "playground.asgi.application"

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
                "django.template.context_processors.csp",
                "chat.context_processors.playground",
            ],
        },
    },
]

# Database. Embedded default: SQLite under the data dir. Scaled out: PostgreSQL via DATABASE_URL
# (options such as ?connect_timeout=5 or ?sslmode=require go in the URL).
#
# Threads that use the database: the event loop's default thread pool, where replies and the
# sweeper save (sync_to_async(thread_sensitive=False); its size is ASGI_THREADS, which daphne
# reads at start, else asyncio's min(32, CPUs + 4)); asgiref's one thread for the ORM calls of
# WebSocket consumers; a thread per HTTP request being handled (Django's ASGI handler starts one
# per request and lets it end with the request); a thread per upload being processed.
#
# PostgreSQL: each process keeps a pool of connections (psycopg's pool, built into Django). A
# thread borrows a connection for one request, one save or one consumer event, and gives it back,
# so one process never holds more than PLAYGROUND_DB_POOL_SIZE connections, however many threads
# it runs (a thread that finds none free waits up to PLAYGROUND_DB_POOL_TIMEOUT seconds, 10 by
# default, then fails with the pool's time-out). The sum must fit the server:
#   processes x PLAYGROUND_DB_POOL_SIZE <= max_connections - superuser_reserved_connections (3)
#                                          - room for migrate, psql, backups
# e.g. PostgreSQL's default max_connections=100: 4 processes x 20 = 80. More processes: a smaller
# pool, a larger max_connections, or PgBouncer in transaction mode in between. Health checks
# make the pool replace a connection the server dropped (restart, failover, idle timeout) before
# lending it. Django's persistent connections (CONN_MAX_AGE) are not used: under ASGI each
# request has a thread of its own, whose kept connection would linger until garbage collection.
DB_POOL_SIZE = envint("PLAYGROUND_DB_POOL_SIZE", "20", minimum=1)
DB_POOL_TIMEOUT = envfloat("PLAYGROUND_DB_POOL_TIMEOUT", "10", minimum=0.1)
if os.getenv("DATABASE_URL"):
    import dj_database_url

    try:
        DATABASES = {
            "default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_health_checks=True)
        }
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["OPTIONS"] = {
            **DATABASES["default"].get("OPTIONS", {}),
            "pool": {
                "min_size": min(2, DB_POOL_SIZE),
                "max_size": DB_POOL_SIZE,
                "timeout": DB_POOL_TIMEOUT,
            },
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "playground.sqlite3",
            "OPTIONS": {
                # WAL lets readers go on while a stream checkpoints its message.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # A file, not shared-cache memory: streams save from several threads at once.
            "TEST": {"NAME": DATA_DIR / "test.sqlite3"},
            # Kept open by the long-lived threads replies save from (no server, no limit).
            "CONN_MAX_AGE": 600,
        }
    }

# Channel layer. Embedded default: in memory (one process): per channel at most `capacity`
# messages wait, each for at most `expiry` seconds (a page that falls that far behind misses
# frames and asks for a snapshot; the job never waits); a page stays in its conversation's group
# for `group_expiry` seconds, longer than daphne's --websocket_timeout (86400 s by default).
# Scaled out: Redis via REDIS_URL, so frames, Stop and snapshots reach every process. Redis
# pub/sub, not channels_redis's queue layer: that one fetches each message with its own blocking
# read, one round trip per frame per page, which could not keep up with 100 streams watched from
# another process; pub/sub pushes frames down one connection per process as they are published.
# Nothing is kept for a page that is not connected, which the pages handle already: a page
# that (re)connects or sees a gap asks the job for the text so far. Channel names start with
# PLAYGROUND_REDIS_PREFIX, so several deployments (or test runs) can share a Redis.
REDIS_URL = os.getenv("REDIS_URL", "").strip()
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL must be a redis:// URL, not {REDIS_URL!r}")
if REDIS_URL:
    REDIS_PREFIX = envstr("PLAYGROUND_REDIS_PREFIX", "playground").strip()
    if not REDIS_PREFIX or any(c.isspace() or c in "*?[]" for c in REDIS_PREFIX):
        raise ImproperlyConfigured(
            f"PLAYGROUND_REDIS_PREFIX must be a word with no spaces or wildcards, not "
            f"{REDIS_PREFIX!r}"
        )
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.layers.RedisPubSubChannelLayer",
            "CONFIG": {
                # A publish to a Redis that stopped answering fails after 15 s.
                "hosts": [
                    {"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5}
                ],
                "prefix": REDIS_PREFIX,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000, "expiry": 30, "group_expiry": 3 * 86400},
        }
    }

# Log-in throttling counts tries here (chat.throttle): shared by every process when Redis is
# there, under the deployment's own prefix.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "index"
LOGOUT_REDIRECT_URL = "login"

# The interface's languages (chat/languages.py): a person's choice (the language cookie, kept
# on their profile too), else the browser's Accept-Language, else English. Catalogues are under
# locale/, compiled by `manage.py compilemessages` (scripts/serve, scripts/test, the image).
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文"), ("ar", "العربية")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Hashed, compressed static files need `collectstatic` (scripts/serve and the image run it);
# PLAYGROUND_MANIFEST_STATIC=false serves them straight from the source folders instead.
MANIFEST_STATIC = envbool("PLAYGROUND_MANIFEST_STATIC", "false" if DEBUG else "true")


# Where attachment files are kept (chat.files): by default the file system under MEDIA_ROOT
# (the data dir's media/). Another Django storage, e.g. django-storages' S3 for an S3-compatible
# store (`pip install -e ".[s3]"`):
#   PLAYGROUND_STORAGE_BACKEND=storages.backends.s3.S3Storage
#   PLAYGROUND_STORAGE_OPTIONS='{"bucket_name": "playground", "endpoint_url": "https://...",
#                                "access_key": "...", "secret_key": "..."}'
# Uploads are still made in MEDIA_ROOT (chunks, conversion), then handed to the storage; see
# README, "Scaling out".
def _storage_options() -> dict:
    value = envstr("PLAYGROUND_STORAGE_OPTIONS", "{}")
    try:
        options = json.loads(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"PLAYGROUND_STORAGE_OPTIONS is not JSON: {exc}") from None
    if not isinstance(options, dict):
        raise ImproperlyConfigured("PLAYGROUND_STORAGE_OPTIONS must be a JSON object")
    return options


STORAGE_BACKEND = envstr(
    "PLAYGROUND_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"
).strip()
_storage_module = STORAGE_BACKEND.rpartition(".")[0]
try:
    _storage_found = bool(_storage_module) and importlib.util.find_spec(_storage_module)
except ImportError:
    _storage_found = False
if not _storage_found:
    raise ImproperlyConfigured(
        f"PLAYGROUND_STORAGE_BACKEND must name a storage class that is installed, "
        f"not {STORAGE_BACKEND!r}"
    )
STORAGE_OPTIONS = _storage_options()
if STORAGE_BACKEND == "storages.backends.s3.S3Storage":
    # A file read from the store is spooled to disk past 8 MiB (the library keeps it all in
    # memory by default: a video sent to the API would be).
    STORAGE_OPTIONS.setdefault("max_memory_size", 8 * 1024 * 1024)
STORAGES = {
    "default": {"BACKEND": STORAGE_BACKEND, "OPTIONS": STORAGE_OPTIONS},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if MANIFEST_STATIC
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not MANIFEST_STATIC
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

from django.utils.csp import CSP  # noqa: E402

SECURE_CSP = {
    "default-src": [CSP.SELF],
    # WebAssembly may be compiled (the call's speech detection), nothing else evaluated.
    "script-src": [CSP.SELF, CSP.WASM_UNSAFE_EVAL],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:", "blob:"],
    "media-src": [CSP.SELF, "blob:", "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}


def _as_warning(record):
    """A request with a Host header the site does not answer to, or a URL too long to send
    back to log in with (DisallowedRedirect), is the client's mistake (or a probe), not the
    server's: Django logs it as an error, kept here as a warning."""
    record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"as_warning": {"()": lambda: _as_warning}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "chat": {"level": envstr("PLAYGROUND_LOG_LEVEL", "INFO").upper()},
        "django.security.DisallowedHost": {"filters": ["as_warning"]},
        "django.security.DisallowedRedirect": {"filters": ["as_warning"]},
    },
}

# The upstream model API. With no key and no base URL, the built-in offline simulator answers.
PLAYGROUND_API_KEY = os.getenv("PLAYGROUND_API_KEY", "").strip()
_api_base_set = bool(os.getenv("PLAYGROUND_API_BASE", "").strip())
PLAYGROUND_API_BASE = envurl("PLAYGROUND_API_BASE", "https://api.aimlapi.com/v1")
PLAYGROUND_USE_SIMULATOR = not PLAYGROUND_API_KEY and not _api_base_set
PLAYGROUND_MODEL = envstr("PLAYGROUND_MODEL", "alibaba/qwen3.5-omni-flash").strip()
if not PLAYGROUND_MODEL:
    raise ImproperlyConfigured("PLAYGROUND_MODEL must not be empty")
# Models offered in the settings panel.
PLAYGROUND_MODELS = [
    m.strip()
    for m in envstr("PLAYGROUND_MODELS", f"{PLAYGROUND_MODEL},alibaba/qwen3.5-omni-plus").split(",")
    if m.strip()
]
PLAYGROUND_MODELS = list(dict.fromkeys(PLAYGROUND_MODELS))
PLAYGROUND_CONNECT_TIMEOUT = envfloat("PLAYGROUND_CONNECT_TIMEOUT", "10", minimum=0.1)
PLAYGROUND_READ_TIMEOUT = envfloat("PLAYGROUND_READ_TIMEOUT", "120", minimum=0.1)
PLAYGROUND_SIMULATOR_DELAY = envfloat("PLAYGROUND_SIMULATOR_DELAY", "0.03")
PLAYGROUND_SIGNUP = envbool("PLAYGROUND_SIGNUP", "false")
# How often a streaming reply is saved, and how long before a silent stream counts as dead.
PLAYGROUND_CHECKPOINT_SECONDS = envfloat("PLAYGROUND_CHECKPOINT_SECONDS", "1.5", minimum=0.1)
PLAYGROUND_FRAME_INTERVAL = envfloat("PLAYGROUND_FRAME_INTERVAL", "0.05")
# A streaming reply not checkpointed for this long belongs to a process that died.
PLAYGROUND_LEASE_SECONDS = envfloat("PLAYGROUND_LEASE_SECONDS", "15", minimum=1)
if PLAYGROUND_LEASE_SECONDS < 3 * PLAYGROUND_CHECKPOINT_SECONDS:
    raise ImproperlyConfigured(
        "PLAYGROUND_LEASE_SECONDS must be at least 3 x PLAYGROUND_CHECKPOINT_SECONDS"
    )

# Uploaded media: stored under the data dir, served only through views that check access.
MEDIA_ROOT = DATA_DIR / "media"
MB = 1024 * 1024
# Largest file accepted for upload; videos above the API's limit are re-encoded smaller.
PLAYGROUND_MAX_UPLOAD_BYTES = envint("PLAYGROUND_MAX_UPLOAD_BYTES", str(2048 * MB), minimum=1)
# What the API accepts (documented limits of qwen3-omni-flash; qwen3.5 is reported larger).
PLAYGROUND_MAX_IMAGE_BYTES = envint("PLAYGROUND_MAX_IMAGE_BYTES", str(10 * MB), minimum=1)
PLAYGROUND_MAX_IMAGE_PIXELS = envint("PLAYGROUND_MAX_IMAGE_PIXELS", str(50_000_000), minimum=1)
PLAYGROUND_MAX_AUDIO_BYTES = envint("PLAYGROUND_MAX_AUDIO_BYTES", str(100 * MB), minimum=1)
PLAYGROUND_MAX_AUDIO_SECONDS = envfloat("PLAYGROUND_MAX_AUDIO_SECONDS", "1200", minimum=1)
PLAYGROUND_MAX_VIDEO_BYTES = envint("PLAYGROUND_MAX_VIDEO_BYTES", str(256 * MB), minimum=1)
PLAYGROUND_MAX_VIDEO_SECONDS = envfloat("PLAYGROUND_MAX_VIDEO_SECONDS", "150", minimum=1)
# One utterance of a voice call, sent whole (a minute of 16 kHz WAV is 1.9 MB; a camera's
# short video more).
PLAYGROUND_MAX_CALL_BYTES = envint("PLAYGROUND_MAX_CALL_BYTES", str(16 * MB), minimum=64 * 1024)
# Importing a conversation archive: the upload, and everything it unpacks to.
PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES = envint(
    "PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES", str(256 * MB), minimum=1
)
PLAYGROUND_MAX_IMPORT_BYTES = envint("PLAYGROUND_MAX_IMPORT_BYTES", str(1024 * MB), minimum=1)
PLAYGROUND_UPLOAD_CHUNK_BYTES = envint("PLAYGROUND_UPLOAD_CHUNK_BYTES", str(8 * MB), minimum=1024)
# How media reaches the API: "inline" base64 data URLs, or "url": signed, expiring links on
# PLAYGROUND_PUBLIC_URL (which the API's servers must be able to reach).
PLAYGROUND_MEDIA_DELIVERY = envstr("PLAYGROUND_MEDIA_DELIVERY", "inline")
if PLAYGROUND_MEDIA_DELIVERY not in ("inline", "url"):
    raise ImproperlyConfigured(
        f"PLAYGROUND_MEDIA_DELIVERY must be 'inline' or 'url', not {PLAYGROUND_MEDIA_DELIVERY!r}"
    )
PLAYGROUND_PUBLIC_URL = (
    envurl("PLAYGROUND_PUBLIC_URL", "") if os.getenv("PLAYGROUND_PUBLIC_URL") else ""
)
if PLAYGROUND_MEDIA_DELIVERY == "url" and not PLAYGROUND_PUBLIC_URL:
    raise ImproperlyConfigured("PLAYGROUND_MEDIA_DELIVERY=url needs PLAYGROUND_PUBLIC_URL")
PLAYGROUND_MEDIA_URL_SECONDS = envint("PLAYGROUND_MEDIA_URL_SECONDS", "3600", minimum=60)

# Served over TLS (an https:// public URL or trusted origin): cookies only go over https, and
# browsers are told to use nothing else (HSTS, PLAYGROUND_HSTS_SECONDS; 0 turns it off). Behind
# a proxy that ends TLS, a request counts as https from X-Forwarded-Proto, believed only from
# PLAYGROUND_TRUSTED_PROXIES (the header is removed from anyone else's requests).
SERVED_OVER_HTTPS = PLAYGROUND_PUBLIC_URL.startswith("https://") or any(
    origin.startswith("https://") for origin in CSRF_TRUSTED_ORIGINS
)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SERVED_OVER_HTTPS
SECURE_HSTS_SECONDS = envint("PLAYGROUND_HSTS_SECONDS", "31536000") if SERVED_OVER_HTTPS else 0
if PLAYGROUND_TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
DATA_UPLOAD_MAX_MEMORY_SIZE = PLAYGROUND_UPLOAD_CHUNK_BYTES + MB
# Request bodies (playground/request_limits.py): refused with 413 by the server before they are
# read, past this size for any route but an upload chunk (PLAYGROUND_UPLOAD_CHUNK_BYTES) and an
# archive import (PLAYGROUND_MAX_IMPORT_UPLOAD_BYTES). 2.5 MiB, as Django's own form default.
PLAYGROUND_MAX_BODY_BYTES = envint("PLAYGROUND_MAX_BODY_BYTES", str(5 * MB // 2), minimum=64 * 1024)

# The models offered: the upstream's GET /models, asked in the background with a short time-out
# and kept for PLAYGROUND_MODELS_CACHE_SECONDS (a failure too); PLAYGROUND_MODELS until it answers.
PLAYGROUND_MODELS_CACHE_SECONDS = envint("PLAYGROUND_MODELS_CACHE_SECONDS", "300")
PLAYGROUND_MODELS_TIMEOUT = envfloat("PLAYGROUND_MODELS_TIMEOUT", "3", minimum=0.1)
# After a conversation's first reply, a second small request asks the model for its title.
PLAYGROUND_AUTO_TITLES = envbool("PLAYGROUND_AUTO_TITLES", "true")
# Turns (a message sent, a reply regenerated, an edit, tool results) being saved at once in one
# process, and how long the next one waits for a slot before it is answered busy
# (chat/admission.py).
# Half the pool by default: the other half stays for streaming replies' checkpoints and pages.
PLAYGROUND_TURN_SLOTS = envint("PLAYGROUND_TURN_SLOTS", str(max(1, DB_POOL_SIZE // 2)), minimum=1)
PLAYGROUND_TURN_WAIT_SECONDS = envfloat("PLAYGROUND_TURN_WAIT_SECONDS", "5")
# Pages and JSON gzipped for the browsers that ask (playground.middleware.Compression); `false`
# when a proxy in front compresses instead.
PLAYGROUND_COMPRESS = envbool("PLAYGROUND_COMPRESS", "true")
