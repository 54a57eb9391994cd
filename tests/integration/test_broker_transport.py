"""The Redis transport Attune publishes with (attune/broker.py): one client
per connection pool, reused for every message, on the real broker Redis."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from attune import broker
from attune.broker import RedisChannel, transport_for
from tests.stacks import RABBITMQ, Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def queue_name() -> Iterator[str]:
    name = f"broker-test-{uuid.uuid4().hex}"
    yield name
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(name)


def connect() -> Connection:
    return Connection(settings.CELERY_BROKER_URL, transport=transport_for(settings.CELERY_BROKER_URL))


def publish(connection: Connection, queue_name: str, body: dict[str, int]) -> None:
    queue = Queue(queue_name, Exchange(queue_name, type="direct"), routing_key=queue_name)
    connection.Producer(serializer="json").publish(
        body, exchange=queue.exchange, routing_key=queue_name, declare=[queue]
    )


def consume_all(connection: Connection, queue_name: str) -> list[dict[str, int]]:
    queue = Queue(queue_name, Exchange(queue_name, type="direct"), routing_key=queue_name)
    bodies: list[dict[str, int]] = []
    with connection.SimpleQueue(queue) as simple:
        while True:
            try:
                message = simple.get(timeout=0.5)
            except simple.Empty:
                return bodies
            bodies.append(message.payload)
            message.ack()


def test_the_app_publishes_through_it() -> None:
    from attune.celery import app

    with app.connection_for_write() as connection:
        assert isinstance(connection.default_channel, RedisChannel)


def test_every_message_goes_out_on_one_client_and_arrives_in_order(queue_name: str) -> None:
    with connect() as connection:
        channel = connection.default_channel
        publish(connection, queue_name, {"n": 0})
        client = channel._shared_client
        assert client is not None
        for n in range(1, 50):
            publish(connection, queue_name, {"n": n})
        assert channel._shared_client is client
        assert [body["n"] for body in consume_all(connection, queue_name)] == list(range(50))


def test_a_new_pool_gets_a_new_client(queue_name: str) -> None:
    """A channel drops its pool when its connections are reset (after a
    fork, kombu's ``_after_fork``); a client left on the old pool would
    share the parent's sockets."""
    with connect() as connection:
        channel = connection.default_channel
        publish(connection, queue_name, {"n": 0})
        before = channel._shared_client
        channel._disconnect_pools()
        publish(connection, queue_name, {"n": 1})
        assert channel._shared_client is not before
        assert channel._shared_client.connection_pool is channel.pool
        assert [body["n"] for body in consume_all(connection, queue_name)] == [0, 1]


def test_threads_publishing_at_once_lose_nothing(queue_name: str) -> None:
    threads_count, per_thread = 4, 100
    with connect() as connection:
        channel = connection.default_channel
        publish(connection, queue_name, {"n": -1})
        barrier = threading.Barrier(threads_count)
        errors: list[BaseException] = []

        def publish_many(offset: int) -> None:
            try:
                barrier.wait()
                for n in range(per_thread):
                    with channel.conn_or_acquire() as client:
                        client.lpush(queue_name + "-raw", offset + n)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=publish_many, args=(i * 1000,)) for i in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        raw = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        try:
            assert errors == []
            pushed = sorted(int(value) for value in raw.lrange(queue_name + "-raw", 0, -1))
            assert pushed == sorted(i * 1000 + n for i in range(threads_count) for n in range(per_thread))
        finally:
            raw.delete(queue_name + "-raw")


def test_a_grant_reaches_a_queue_nothing_declared_and_names_its_execution(
    make_action: Any, queue_name: str
) -> None:
    """Grants go out without declaring their queue on Redis: the message
    must still land on the queue's list, where a worker of that queue
    BRPOPs it, with the execution id Celery's logs would show."""
    from queues import dispatch

    action = make_action(celery_queue=queue_name)
    execution_id = str(uuid.uuid4())
    dispatch._send(execution_id, execution_id, action, granted_at=0.0)

    raw = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    messages = [json.loads(message) for message in raw.lrange(queue_name, 0, -1)]
    assert [message["headers"]["id"] for message in messages] == [execution_id]
    assert messages[0]["headers"]["argsrepr"] == f"['{execution_id}']"
    assert raw.smembers(f"_kombu.binding.{queue_name}") == set()


@pytest.mark.parametrize("stack", [RABBITMQ], indirect=True, ids=str)
def test_on_rabbitmq_a_grant_declares_its_queue_so_it_is_kept(stack: Stack, make_action: Any) -> None:
    """RabbitMQ drops a message for a queue that does not exist: there the
    grant declares its queue, and the message waits in it for a worker."""
    from attune.celery import app
    from queues import dispatch

    name = f"broker-test-{uuid.uuid4().hex}"
    action = make_action(celery_queue=name)
    execution_id = str(uuid.uuid4())
    dispatch._send(execution_id, execution_id, action, granted_at=0.0)

    with app.connection_for_write() as connection:
        channel = connection.default_channel
        try:
            declared = channel.queue_declare(name, passive=True)
            assert declared.message_count == 1
        finally:
            channel.queue_delete(name)


def _task_ids_in_arrival_order(queue_name: str) -> list[str]:
    """The task ids on a queue's list, in the order workers take them
    (kombu pushes at the head and workers pop the tail)."""
    raw = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return [json.loads(message)["headers"]["id"] for message in reversed(raw.lrange(queue_name, 0, -1))]


@pytest.mark.django_db(transaction=True)
def test_an_admission_sends_its_grants_in_one_round_trip_in_request_order(
    make_action: Any, queue_name: str, redis_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from executions import services

    flushed: list[int] = []
    flush = kombu_redis.PublishBatch.flush

    def counting_flush(batch: kombu_redis.PublishBatch) -> None:
        flushed.append(batch._buffered)
        flush(batch)

    monkeypatch.setattr(kombu_redis.PublishBatch, "flush", counting_flush)
    action = make_action(celery_queue=queue_name, concurrency_limit=20)
    executions = services.request_executions(action.ref, [{} for _ in range(12)])

    assert {execution.status for execution in executions} == {"scheduled"}
    assert _task_ids_in_arrival_order(queue_name) == [str(execution.pk) for execution in executions]
    assert flushed == [12]


@pytest.mark.django_db(transaction=True)
def test_a_failed_batch_is_sent_again_one_by_one_and_nothing_is_lost(
    make_action: Any, queue_name: str, redis_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from executions import services

    def failing_flush(batch: kombu_redis.PublishBatch) -> None:
        raise kombu_redis.BatchPublishError("Redis publish batch failed; delivery is uncertain")

    monkeypatch.setattr(kombu_redis.PublishBatch, "flush", failing_flush)
    action = make_action(celery_queue=queue_name, concurrency_limit=20)
    executions = services.request_executions(action.ref, [{} for _ in range(5)])

    assert _task_ids_in_arrival_order(queue_name) == [str(execution.pk) for execution in executions]


def _messages(queue_name: str) -> list[dict[str, Any]]:
    raw = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return [json.loads(message) for message in reversed(raw.lrange(queue_name, 0, -1))]


def _comparable(message: dict[str, Any]) -> dict[str, Any]:
    """A message without what differs between two sends of one task: the
    delivery tag kombu draws for each, and the args' repr that Celery also
    copies into the properties (the headers carry it, where workers read it)."""
    properties = {
        name: value
        for name, value in message["properties"].items()
        if name not in ("delivery_tag", "argsrepr", "kwargsrepr")
    }
    body = json.loads(base64.b64decode(message["body"]))
    return {**message, "properties": properties, "body": body}


def test_a_grant_is_the_message_send_task_would_make(make_action: Any, queue_name: str) -> None:
    """Grants are built without send_task on Redis; a worker must not be
    able to tell one from the message Celery would have sent for it (the
    same headers, body and properties), or a Celery upgrade that changes
    its protocol must fail here."""
    from attune.celery import app
    from queues import dispatch, metrics

    action = make_action(celery_queue=queue_name, timeout_seconds=30)
    execution_id = str(uuid.uuid4())
    headers = {
        metrics.GRANTED_AT_HEADER: 1234.5,
        dispatch.CONFIG_HEADER: "token",
        metrics.RELEASED_AT_HEADER: 1234.0,
    }
    dispatch._send(execution_id, execution_id, action, 1234.0, granted_at=1234.5, config="token", rated=False)
    app.send_task(
        dispatch.RUN_TASK,
        args=[execution_id],
        task_id=execution_id,
        queue=queue_name,
        soft_time_limit=30.0,
        time_limit=30.0 + float(settings.ATTUNE_HARD_TIMEOUT_GRACE_SECONDS),
        headers=headers,
        argsrepr=f"['{execution_id}']",
        kwargsrepr="{}",
        declare=[],
    )

    ours, celerys = _messages(queue_name)
    assert ours["properties"]["delivery_tag"] != celerys["properties"]["delivery_tag"]
    assert _comparable(ours) == _comparable(celerys)
    assert _comparable(ours)["body"] == [[execution_id], {}, broker.NO_WORKFLOW]


def test_with_a_publish_signal_receiver_a_grant_goes_through_send_task(
    make_action: Any, queue_name: str
) -> None:
    """Tracing and other plug-ins put their context into a message from
    before_task_publish; the direct path would skip them."""
    from celery.signals import before_task_publish

    from queues import dispatch

    seen: list[str] = []

    def receiver(headers: dict[str, Any], **kwargs: Any) -> None:
        seen.append(headers["id"])
        headers["traced"] = "yes"

    before_task_publish.connect(receiver, weak=False)
    try:
        assert broker.publish_hooked()
        action = make_action(celery_queue=queue_name)
        execution_id = str(uuid.uuid4())
        dispatch._send(execution_id, execution_id, action, granted_at=0.0)
    finally:
        before_task_publish.disconnect(receiver)

    assert not broker.publish_hooked()
    assert seen == [execution_id]
    assert [message["headers"].get("traced") for message in _messages(queue_name)] == ["yes"]
