"""Settings for Omni Playground, read from the environment with safe defaults.

A bad value stops start-up with a message that names the variable.
"""

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
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in envstr("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

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
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
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

if os.getenv("DATABASE_URL"):
    import dj_database_url

    try:
        DATABASES = {
            "default": dj_database_url.parse(
                os.environ["DATABASE_URL"], conn_max_age=600, conn_health_checks=True
            )
        }
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
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
        }
    }

REDIS_URL = os.getenv("REDIS_URL", "").strip()
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL must be a redis:// URL, not {REDIS_URL!r}")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 30},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000, "expiry": 30},
        }
    }

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

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Hashed, compressed static files need `collectstatic` (scripts/serve and the image run it);
# PLAYGROUND_MANIFEST_STATIC=false serves them straight from the source folders instead.
MANIFEST_STATIC = envbool("PLAYGROUND_MANIFEST_STATIC", "false" if DEBUG else "true")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
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
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:", "blob:"],
    "media-src": [CSP.SELF, "blob:", "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"chat": {"level": envstr("PLAYGROUND_LOG_LEVEL", "INFO").upper()}},
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
DATA_UPLOAD_MAX_MEMORY_SIZE = PLAYGROUND_UPLOAD_CHUNK_BYTES + MB
