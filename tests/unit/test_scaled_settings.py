"""The settings of the scaled-out stacks: a Redis Cluster URL, RabbitMQ as
the broker, PgBouncer in front of PostgreSQL. Each case reads the settings
module in a fresh interpreter with the environment an operator would set."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from attune.env import RedisClusterURL, redis_cluster_url
from tests.conftest import ROOT

READ_SETTINGS = """
import json
from attune import settings as s
db = s.DATABASES["default"]
print(json.dumps({
    "cache": s.CACHES["default"]["BACKEND"],
    "broker_is_redis": s.BROKER_IS_REDIS,
    "transport": s.CELERY_BROKER_TRANSPORT,
    "acks_late": s.CELERY_TASK_ACKS_LATE,
    "disable_prefetch": s.CELERY_WORKER_DISABLE_PREFETCH,
    "transport_options": s.CELERY_BROKER_TRANSPORT_OPTIONS,
    "conn_max_age": db["CONN_MAX_AGE"],
    "server_side_cursors_disabled": db.get("DISABLE_SERVER_SIDE_CURSORS", False),
}))
"""


def read_settings(**env: str) -> subprocess.CompletedProcess[str]:
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "CELERY_BROKER_URL", "ATTUNE_DB_POOLER", "DATABASE_CONN_MAX_AGE"}
    }
    return subprocess.run(
        [sys.executable, "-c", READ_SETTINGS],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "attune.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings_with(**env: str) -> dict[str, object]:
    completed = read_settings(**env)
    assert completed.returncode == 0, completed.stderr
    return dict(json.loads(completed.stdout))


def test_it_reads_the_startup_nodes_and_credentials_of_a_cluster_url() -> None:
    assert redis_cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7001") == RedisClusterURL(
        nodes=(("10.0.0.1", 7000), ("10.0.0.2", 7001))
    )
    assert redis_cluster_url("rediss+cluster://app:p%40ss@[::1]:7000/0") == RedisClusterURL(
        nodes=(("::1", 7000),), username="app", password="p@ss", ssl=True
    )
    assert redis_cluster_url("redis+cluster://redis-a") == RedisClusterURL(nodes=(("redis-a", 6379),))


def test_it_reads_a_plain_redis_url_as_no_cluster() -> None:
    assert redis_cluster_url("redis://127.0.0.1:6379/3") is None
    assert redis_cluster_url("unix:///run/redis.sock") is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://h:7000/2", "a Redis Cluster has only database 0"),
        ("redis+cluster://h:7000,:7001", "':7001' is not host:port"),
        ("redis+cluster://h:port", "'h:port' is not host:port"),
        ("redis+cluster://h:70000", "'h:70000' is not host:port"),
    ],
)
def test_it_refuses_a_malformed_cluster_url_naming_the_variable(url: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"^REDIS_URL: {message}"):
        redis_cluster_url(url, name="REDIS_URL")


def test_it_puts_the_throttles_on_the_cluster_and_wants_a_broker_named() -> None:
    refused = read_settings(REDIS_URL="redis+cluster://127.0.0.1:7000")
    assert refused.returncode != 0
    assert "CELERY_BROKER_URL must be set when REDIS_URL is a Redis Cluster" in refused.stderr

    values = settings_with(
        REDIS_URL="redis+cluster://127.0.0.1:7000", CELERY_BROKER_URL="redis://127.0.0.1:6379/1"
    )
    assert values["cache"] == "attune.cache.RedisClusterCache"
    assert values["broker_is_redis"] is True


def test_it_acknowledges_late_on_rabbitmq_and_drops_the_redis_transport_options() -> None:
    redis_broker = settings_with(CELERY_BROKER_URL="redis://127.0.0.1:6379/1")
    assert (redis_broker["acks_late"], redis_broker["disable_prefetch"]) == (False, True)
    assert set(redis_broker["transport_options"]) == {"ack_emulation", "visibility_timeout"}  # type: ignore[arg-type]

    rabbitmq = settings_with(CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:5672/attune")
    assert rabbitmq["broker_is_redis"] is False
    assert (rabbitmq["acks_late"], rabbitmq["disable_prefetch"]) == (True, False)
    assert rabbitmq["transport_options"] == {}


@pytest.mark.parametrize(
    ("broker_url", "transport"),
    [
        ("redis://127.0.0.1:6379/1", "attune.broker:RedisTransport"),
        ("rediss://cache.example:6380/0", "attune.broker:RedisTransport"),
        ("sentinel://10.0.0.1:26379", "sentinel"),
        ("amqp://guest:guest@127.0.0.1:5672/attune", "amqp"),
        ("pyamqp://guest:guest@127.0.0.1:5672//", "pyamqp"),
    ],
)
def test_it_publishes_to_a_plain_redis_broker_with_its_own_transport(broker_url: str, transport: str) -> None:
    assert settings_with(CELERY_BROKER_URL=broker_url)["transport"] == transport


def test_it_keeps_no_session_state_behind_pgbouncer() -> None:
    direct = settings_with(DATABASE_URL="postgres://u@127.0.0.1:5432/attune")
    assert (direct["conn_max_age"], direct["server_side_cursors_disabled"]) == (60, False)

    pooled = settings_with(DATABASE_URL="postgres://u@127.0.0.1:6432/attune", ATTUNE_DB_POOLER="pgbouncer")
    assert (pooled["conn_max_age"], pooled["server_side_cursors_disabled"]) == (0, True)

    refused = read_settings(ATTUNE_DB_POOLER="pgpool")
    assert refused.returncode != 0
    assert "ATTUNE_DB_POOLER must be empty or pgbouncer, got 'pgpool'" in refused.stderr
