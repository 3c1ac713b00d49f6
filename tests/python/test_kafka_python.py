"""kafka-python (pure Python, its own protocol versions) against Kora."""
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import TopicAlreadyExistsError


def test_produce_consume_round_trip(kora):
    admin = KafkaAdminClient(bootstrap_servers=kora.bootstrap)
    admin.create_topics([NewTopic("py-rt", num_partitions=3, replication_factor=1)])
    for codec in (None, "gzip"):
        producer = KafkaProducer(bootstrap_servers=kora.bootstrap, acks="all", compression_type=codec, linger_ms=5)
        futures = []
        for i in range(3000):
            futures.append(producer.send("py-rt", key=f"k{i}".encode(), value=f"v{i}".encode() * 3,
                                         partition=i % 3, headers=[("i", str(i).encode())],
                                         timestamp_ms=1_700_000_000_000 + i))
        producer.flush()
        metas = [f.get(timeout=30) for f in futures]
        assert all(m.offset >= 0 for m in metas)
        producer.close()

    consumer = KafkaConsumer(bootstrap_servers=kora.bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=5000, auto_offset_reset="earliest")
    parts = [TopicPartition("py-rt", p) for p in range(3)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    seen = {p: [] for p in range(3)}
    for m in consumer:
        seen[m.partition].append(m)
        if sum(len(v) for v in seen.values()) == 6000:
            break
    consumer.close()
    assert sum(len(v) for v in seen.values()) == 6000
    for p, msgs in seen.items():
        idx = [int(dict(m.headers)["i"]) for m in msgs]
        # Both codecs' rounds, each in send order.
        assert idx == [i for i in range(p, 3000, 3)] * 2
        for m in msgs:
            i = int(dict(m.headers)["i"])
            assert m.key == f"k{i}".encode()
            assert m.value == f"v{i}".encode() * 3
            assert m.timestamp == 1_700_000_000_000 + i
        assert [m.offset for m in msgs] == list(range(len(msgs)))


def test_admin_operations(kora):
    admin = KafkaAdminClient(bootstrap_servers=kora.bootstrap)
    admin.create_topics([NewTopic("py-admin", num_partitions=2, replication_factor=1,
                                  topic_configs={"retention.ms": "3600000"})])
    try:
        admin.create_topics([NewTopic("py-admin", num_partitions=2, replication_factor=1)])
        raise AssertionError("expected TopicAlreadyExistsError")
    except TopicAlreadyExistsError:
        pass
    assert "py-admin" in admin.list_topics()
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "py-admin")])
    text = repr(res)
    assert "retention.ms" in text and "3600000" in text
    admin.create_partitions({"py-admin": NewPartitions(total_count=5)})
    meta = admin.describe_topics(["py-admin"])
    assert len(meta[0]["partitions"]) == 5
    admin.delete_topics(["py-admin"])
    deadline = time.time() + 10
    while "py-admin" in admin.list_topics():
        assert time.time() < deadline
        time.sleep(0.1)
    admin.close()
