"""Loaded with `-p tests.testenv` before Django is configured: the default
services the suite talks to (scripts/test.sh sets the same)."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
# The suite makes thousands of API calls a minute from one address, many
# without credentials; the throttles have their own tests, with their own rates.
os.environ.setdefault("ATTUNE_API_THROTTLE_ANON", "1000000/minute")
os.environ.setdefault("ATTUNE_API_THROTTLE_USER", "1000000/minute")
