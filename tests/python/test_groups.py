"""Consumer groups from other client implementations: kafka-python (its own classic-protocol
code), kcat -G (librdkafka's balanced consumer as packaged by Debian), confluent-kafka with
group.protocol=consumer (KIP-848), and confluent-kafka's group admin APIs."""
import shutil
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic as CNewTopic
from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def create(kora, topic, partitions):
    admin = AdminClient({"bootstrap.servers": kora.bootstrap})
    for f in admin.create_topics([CNewTopic(topic, partitions, 1)]).values():
        f.result()


def produce(kora, topic, n, start=0):
    p = Producer({"bootstrap.servers": kora.bootstrap, "linger.ms": 5})
    for i in range(start, start + n):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert p.flush(30) == 0


def test_kafka_python_group_shares_and_resumes(kora):
    create(kora, "py-group", 6)
    produce(kora, "py-group", 3000)
    seen = []
    lock = threading.Lock()

    def run(name, stop_after):
        c = KafkaConsumer("py-group", bootstrap_servers=kora.bootstrap, group_id="py-g", client_id=name,
                          auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=8000,
                          session_timeout_ms=10000, heartbeat_interval_ms=500)
        n = 0
        for m in c:
            with lock:
                seen.append((m.partition, m.offset, name))
            n += 1
            if n % 100 == 0:
                c.commit()
            if n >= stop_after:
                break
        c.commit()
        parts = c.assignment()
        c.close()
        return parts

    results = {}
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, run(n, 1000))) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # Both members were given partitions; what they consumed is distinct.
    assert all(results.get(n) for n in ("a", "b")), results
    distinct = {(p, o) for p, o, _ in seen}
    assert len(distinct) == len(seen), "a record went to two members"
    # A new member resumes from the committed offsets and reads exactly the rest.
    before = len(distinct)
    c = KafkaConsumer("py-group", bootstrap_servers=kora.bootstrap, group_id="py-g", auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=5000)
    rest = {(m.partition, m.offset) for m in c}
    c.close()
    assert not (rest & distinct), "committed records were delivered again"
    assert before + len(rest) == 3000


def test_kcat_balanced_consumer(kora):
    kcat = shutil.which("kcat")
    assert kcat, "kcat is installed by scripts/setup-test-deps.sh"
    create(kora, "kcat-group", 4)
    produce(kora, "kcat-group", 400)
    out = subprocess.run([kcat, "-b", kora.bootstrap, "-G", "kcat-g", "-o", "beginning", "-c", "400",
                          "-f", "%p:%o\n", "-X", "session.timeout.ms=6000", "kcat-group"],
                         capture_output=True, timeout=60, text=True)
    assert out.returncode == 0, out.stderr
    lines = {tuple(map(int, l.split(":"))) for l in out.stdout.split()}
    assert len(lines) == 400
    # kcat committed as it went: the group's offsets cover everything it read.
    c = Consumer({"bootstrap.servers": kora.bootstrap, "group.id": "kcat-g"})
    committed = c.committed([CTopicPartition("kcat-group", p) for p in range(4)], timeout=10)
    c.close()
    assert sum(tp.offset for tp in committed) == 400


def test_kip848_consumers_from_python(kora):
    create(kora, "py-848", 6)
    produce(kora, "py-848", 1200)
    conf = {"bootstrap.servers": kora.bootstrap, "group.id": "py-848-g", "group.protocol": "consumer",
            "auto.offset.reset": "earliest"}
    consumers = [Consumer(dict(conf, **{"client.id": f"m{i}"})) for i in range(3)]
    for c in consumers:
        c.subscribe(["py-848"])
    seen = set()
    deadline = time.time() + 60
    while len(seen) < 1200 and time.time() < deadline:
        for c in consumers:
            m = c.poll(0.05)
            if m is not None and m.error() is None:
                assert (m.partition(), m.offset()) not in seen
                seen.add((m.partition(), m.offset()))
    assert len(seen) == 1200
    # Settle: every partition owned by exactly one member.
    deadline = time.time() + 30
    while time.time() < deadline:
        for c in consumers:
            c.poll(0.05)
        owned = [tp.partition for c in consumers for tp in c.assignment()]
        if sorted(owned) == list(range(6)) and all(c.assignment() for c in consumers):
            break
    assert sorted(owned) == list(range(6))

    admin = AdminClient({"bootstrap.servers": kora.bootstrap})
    desc = admin.describe_consumer_groups(["py-848-g"])["py-848-g"].result()
    assert len(desc.members) == 3
    for c in consumers:
        c.close()


def test_group_admin_apis(kora):
    create(kora, "adm-group", 2)
    produce(kora, "adm-group", 100)
    c = Consumer({"bootstrap.servers": kora.bootstrap, "group.id": "adm-g", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe(["adm-group"])
    got = 0
    deadline = time.time() + 30
    while got < 100 and time.time() < deadline:
        m = c.poll(0.1)
        if m is not None and m.error() is None:
            got += 1
    c.commit(asynchronous=False)
    admin = AdminClient({"bootstrap.servers": kora.bootstrap})
    listed = admin.list_consumer_groups().result()
    ids = {g.group_id: g for g in listed.valid}
    assert "adm-g" in ids and ids["adm-g"].state == ConsumerGroupState.STABLE
    desc = admin.describe_consumer_groups(["adm-g"])["adm-g"].result()
    assert desc.state == ConsumerGroupState.STABLE
    assert len(desc.members) == 1
    assert sorted(tp.partition for tp in desc.members[0].assignment.topic_partitions) == [0, 1]
    from confluent_kafka import ConsumerGroupTopicPartitions
    offs = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("adm-g")])["adm-g"].result()
    assert sum(tp.offset for tp in offs.topic_partitions) == 100
    # Deleting a group with a member fails; after the member leaves it succeeds.
    with pytest.raises(Exception):
        admin.delete_consumer_groups(["adm-g"])["adm-g"].result()
    c.close()
    admin.delete_consumer_groups(["adm-g"])["adm-g"].result()
    listed = admin.list_consumer_groups().result()
    assert "adm-g" not in {g.group_id for g in listed.valid}
