"""confluent-kafka (librdkafka 2.x) AdminClient and producer/consumer, and kcat."""
import json
import shutil
import subprocess

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic)


def wait_all(futures):
    return {k: f.result(timeout=30) for k, f in futures.items()}


def test_admin_client(kora):
    a = AdminClient({"bootstrap.servers": kora.bootstrap})
    wait_all(a.create_topics([NewTopic("cf-admin", num_partitions=4, replication_factor=1,
                                       config={"cleanup.policy": "delete", "segment.bytes": "1048576"})]))
    # Duplicates and bad input come back as errors, not hangs.
    with pytest.raises(KafkaException) as e:
        wait_all(a.create_topics([NewTopic("cf-admin", num_partitions=1, replication_factor=1)]))
    assert "TOPIC_ALREADY_EXISTS" in str(e.value)
    with pytest.raises(KafkaException) as e:
        wait_all(a.create_topics([NewTopic("cf-bad", num_partitions=1, replication_factor=3)]))
    assert "REPLICATION_FACTOR" in str(e.value)
    with pytest.raises(KafkaException):
        wait_all(a.create_topics([NewTopic("cf-bad", num_partitions=1, replication_factor=1,
                                           config={"segment.bytes": "nope"})]))

    md = a.list_topics(timeout=10)
    assert "cf-admin" in md.topics and len(md.topics["cf-admin"].partitions) == 4
    assert md.brokers and list(md.brokers.values())[0].port == int(kora.bootstrap.rsplit(":", 1)[1])

    res = ConfigResource(ConfigResource.Type.TOPIC, "cf-admin")
    cfg = wait_all(a.describe_configs([res]))[res]
    assert cfg["segment.bytes"].value == "1048576"
    assert cfg["retention.ms"].value == "604800000"
    assert cfg["retention.ms"].is_default

    inc = ConfigResource(ConfigResource.Type.TOPIC, "cf-admin", incremental_configs=[
        ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("segment.bytes", None, incremental_operation=AlterConfigOpType.DELETE)])
    wait_all(a.incremental_alter_configs([inc]))
    cfg = wait_all(a.describe_configs([res]))[res]
    assert cfg["retention.ms"].value == "60000"
    assert cfg["segment.bytes"].value == "1073741824"

    broker = ConfigResource(ConfigResource.Type.BROKER, "1")
    bcfg = wait_all(a.describe_configs([broker]))[broker]
    assert bcfg["num.partitions"].value == "1"
    assert bcfg["log.segment.bytes"].value == "1073741824"

    wait_all(a.create_partitions([NewPartitions("cf-admin", 6)]))
    assert len(a.list_topics(timeout=10).topics["cf-admin"].partitions) == 6
    with pytest.raises(KafkaException):
        wait_all(a.create_partitions([NewPartitions("cf-admin", 2)]))

    cluster = a.describe_cluster(request_timeout=10).result()
    assert len(cluster.nodes) == 1 and cluster.controller.id == 1

    wait_all(a.delete_topics(["cf-admin"]))
    assert "cf-admin" not in a.list_topics(timeout=10).topics


def test_confluent_producer_consumer(kora):
    p = Producer({"bootstrap.servers": kora.bootstrap, "enable.idempotence": True, "compression.type": "zstd"})
    delivered = []
    for i in range(2000):
        p.produce("cf-data", key=str(i), value=b"x" * (i % 100), partition=0,
                  on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    p.flush(30)
    assert len(delivered) == 2000 and all(e is None for e, _ in delivered)
    c = Consumer({"bootstrap.servers": kora.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    c.assign([TopicPartition("cf-data", 0, 0)])
    got = []
    while len(got) < 2000:
        m = c.poll(10)
        assert m is not None, f"only {len(got)} messages"
        assert m.error() is None
        got.append(m)
    c.close()
    assert [int(m.key()) for m in got] == list(range(2000))
    assert [len(m.value()) for m in got] == [i % 100 for i in range(2000)]


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (scripts/setup-test-deps.sh installs it)")
def test_kcat(kora):
    subprocess.run(["kcat", "-b", kora.bootstrap, "-P", "-t", "kcat-topic", "-K:"],
                   input=b"a:1\nb:2\nc:3\n", check=True, timeout=30)
    out = subprocess.run(["kcat", "-b", kora.bootstrap, "-C", "-t", "kcat-topic", "-e", "-o", "beginning",
                          "-f", "%k=%s@%o\\n"], capture_output=True, check=True, timeout=30).stdout.decode()
    assert out.split() == ["a=1@0", "b=2@1", "c=3@2"]
    meta = json.loads(subprocess.run(["kcat", "-b", kora.bootstrap, "-L", "-J"], capture_output=True,
                                     check=True, timeout=30).stdout)
    assert meta["brokers"][0]["id"] == 1
    topic = [t for t in meta["topics"] if t["topic"] == "kcat-topic"][0]
    assert topic["partitions"][0]["leader"] == 1
