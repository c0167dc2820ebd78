"""A minimal django-oauth-toolkit server for tokend's tests.

Refresh-token rotation and reuse protection are on, as on a careful
production server; lifetimes come from the environment so the tests can
make tokens short-lived.
"""
import os

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = "tokend-test-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "oauth2_provider",
    "tokend_oauth",
]
MIDDLEWARE = []
ROOT_URLCONF = "tokend_oauth.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DOT_DB_PATH", os.path.join(BASE_DIR, "..", "dot.sqlite3")),
        # Many refreshes arrive at once (the kill test): WAL lets reads run
        # beside a write, and IMMEDIATE transactions take the write lock up
        # front instead of failing with "database is locked" on upgrade.
        "OPTIONS": {
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        },
    }
}
USE_TZ = True
# django-oauth-toolkit stores client secrets hashed with Django's password
# hasher; the default (PBKDF2, ~1M iterations) costs ~0.5 s of CPU per token
# request, which would make this test server, not tokend, the bottleneck.
# A fast hasher is fine for a loopback test server.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# Server errors (with tracebacks) go to the server log; requests do not.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}
OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": int(os.environ.get("DOT_ACCESS_TOKEN_SECONDS", "5")),
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": int(os.environ.get("DOT_REUSE_GRACE_SECONDS", "5")),
    "SCOPES": {"read": "Read", "write": "Write"},
    "DEFAULT_SCOPES": ["read"],
}
