"""Tenants' quotas on one `kora dev --auth`, with real clients: librdkafka (confluent-kafka) is
throttled and settles at its quota, sees the throttle in its statistics, and a quota changed at
run time takes effect at once; connections, storage and quotas across a restart."""
import json
import socket
import struct
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from conftest import Kora
from test_tenants import _frame, new_tenant, sasl

KIB = 1024


@pytest.fixture(scope="module")
def kora():
    k = Kora(extra=["--auth"])
    yield k
    k.stop()


class Throttles:
    """librdkafka's statistics: the largest broker throttle it reports (ms)."""

    def __init__(self):
        self.max_ms = 0

    def __call__(self, raw):
        stats = json.loads(raw)
        for b in stats.get("brokers", {}).values():
            self.max_ms = max(self.max_ms, b.get("throttle", {}).get("max", 0))


def produce_for(conf, topic, seconds, record=1000):
    """Produces as fast as librdkafka lets it for `seconds`; the delivery times and sizes."""
    delivered = []
    p = Producer(conf)

    def done(err, msg):
        if err is None:
            delivered.append((time.monotonic(), len(msg.value())))

    payload = b"x" * record
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            p.produce(topic, payload, on_delivery=done)
        except BufferError:
            p.poll(0.05)
        p.poll(0)
    p.flush(60)
    return delivered


def rate(events, start, end):
    """Bytes per second of events in [start, end)."""
    return sum(n for t, n in events if start <= t < end) / (end - start)


def test_produce_settles_at_the_quota_and_librdkafka_sees_the_throttle(kora):
    key = new_tenant(kora, "q-produce")
    tenant = key["tenant"]
    shown = kora.cli("tenant", "quota", "set", tenant, "--producer-byte-rate", "512KiB")
    assert shown["quotas"] == {"producer_byte_rate": 512 * KIB}
    throttles = Throttles()
    conf = {**sasl(kora, key), "statistics.interval.ms": 500, "stats_cb": throttles, "linger.ms": 5,
            "batch.size": 65536, "queue.buffering.max.kbytes": 1024}
    started = time.monotonic()
    events = produce_for(conf, "fast", 24)
    # As in Kafka, the rate is measured over 11 one-second windows and at least 10 s: the first
    # second takes a burst of ten seconds' quota, and every 11 s window after it holds 11 s of it.
    steady = rate(events, started + 12, started + 23)
    assert 0.85 * 512 * KIB <= steady <= 1.15 * 512 * KIB, f"{steady / KIB:.0f} KiB/s against 512"
    assert throttles.max_ms > 0, "librdkafka saw no throttle_time_ms"
    usage = kora.cli("tenant", "usage", tenant)
    assert usage["cell"]["throttle_ms_total"] > 0 and usage["cell"]["throttled_requests_total"] > 0
    assert usage["brokers"][0]["bounds"]["producer_byte_rate"] == 512 * KIB
    metrics = open_metrics(kora)
    assert f'kora_tenant_throttle_time_ms_total{{tenant="{tenant}"}}' in metrics

    # Raised at run time: the next requests are measured against the new bound.
    kora.cli("tenant", "quota", "set", tenant, "--producer-byte-rate", "8MiB")
    started = time.monotonic()
    events = produce_for(conf, "fast", 5)
    assert rate(events, started, started + 5) > 2 * 1024 * KIB, "the raised quota did not take effect"


def open_metrics(kora):
    import urllib.request
    base = kora.admin if kora.admin.startswith("http") else f"http://{kora.admin}"
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        return r.read().decode()


def test_fetch_settles_at_the_quota(kora):
    key = new_tenant(kora, "q-fetch")
    tenant = key["tenant"]
    p = Producer({**sasl(kora, key), "linger.ms": 20, "batch.size": 65536})
    payload = b"y" * 4000
    for _ in range(3000):  # 12 MB
        while True:
            try:
                p.produce("big", payload)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0
    kora.cli("tenant", "quota", "set", tenant, "--consumer-byte-rate", "256KiB")
    throttles = Throttles()
    c = Consumer({**sasl(kora, key), "group.id": "slow", "auto.offset.reset": "earliest",
                  "statistics.interval.ms": 500, "stats_cb": throttles,
                  "fetch.max.bytes": 65536, "max.partition.fetch.bytes": 65536, "message.max.bytes": 65536})
    c.subscribe(["big"])
    events = []
    started = time.monotonic()
    while time.monotonic() < started + 24:
        m = c.poll(0.2)
        if m is not None and not m.error():
            events.append((time.monotonic(), len(m.value())))
    c.close()
    steady = rate(events, started + 12, started + 23)
    assert 0.85 * 256 * KIB <= steady <= 1.15 * 256 * KIB, f"{steady / KIB:.0f} KiB/s against 256"
    assert throttles.max_ms > 0


def authenticate(kora, key):
    """A raw SASL PLAIN login: the SaslAuthenticate error code and message."""
    host, port = kora.bootstrap.split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    mech = b"PLAIN"
    assert _frame(s, 17, 1, 1, struct.pack(">h", len(mech)) + mech, False)[4:6] == b"\x00\x00"
    token = b"\x00" + key["key"].encode() + b"\x00" + key["secret"].encode()
    resp = _frame(s, 36, 2, 2, bytes([len(token) + 1]) + token + b"\x00", True)
    # correlation id, header tags, error_code, error_message (compact nullable string)
    code = struct.unpack(">h", resp[5:7])[0]
    n = resp[7] - 1
    return s, code, resp[8:8 + n].decode() if n > 0 else ""


def test_connections_over_the_quota_are_refused_until_one_closes(kora):
    key = new_tenant(kora, "q-conns")
    kora.cli("tenant", "quota", "set", key["tenant"], "--max-connections", "2")
    a, code_a, _ = authenticate(kora, key)
    b, code_b, _ = authenticate(kora, key)
    c, code_c, message = authenticate(kora, key)
    assert (code_a, code_b) == (0, 0)
    assert code_c == 58 and "limit of 2 connections" in message, (code_c, message)
    c.close()
    a.close()
    time.sleep(0.3)
    d, code_d, _ = authenticate(kora, key)
    assert code_d == 0, "a closed connection frees its slot"
    b.close()
    d.close()


def test_storage_quota_refuses_produce_and_keeps_what_was_acknowledged(kora):
    key = new_tenant(kora, "q-storage")
    kora.cli("tenant", "quota", "set", key["tenant"], "--storage-bytes", "200000")
    conf = {**sasl(kora, key), "linger.ms": 0, "message.send.max.retries": 0}
    p = Producer(conf)
    acked, errors = [], []

    def done(err, msg):
        (errors if err else acked).append(err or msg.value())

    # The broker sums storage once per quota window: keep producing until it refuses.
    deadline = time.time() + 30
    i = 0
    while not errors and time.time() < deadline:
        p.produce("store", b"%06d" % i + b"z" * 10_000, on_delivery=done)
        i += 1
        p.flush(10)
        time.sleep(0.01)
    assert errors, "produce was never refused"
    # (librdkafka reports the code; the broker's message names the storage quota.)
    assert errors[0].code() == KafkaError.POLICY_VIOLATION, errors[0]
    c = Consumer({**sasl(kora, key), "group.id": "check", "auto.offset.reset": "earliest"})
    c.subscribe(["store"])
    got = set()
    end = time.time() + 20
    while len(got) < len(acked) and time.time() < end:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.add(m.value())
    c.close()
    assert got == set(acked), "every acknowledged record is still there"
    # Raised: produce works again.
    kora.cli("tenant", "quota", "set", key["tenant"], "--storage-bytes", "100MB")
    time.sleep(2.5)
    p.produce("store", b"after", on_delivery=done)
    p.flush(10)
    assert acked[-1] == b"after"


def test_bad_quota_values_are_refused_and_a_tenant_cannot_alter_its_own(kora):
    key = new_tenant(kora, "q-bad")
    for args in (["--producer-byte-rate", "-5"], ["--max-connections", "2.5"], ["--producer-byte-rate", "fast"]):
        p = kora.cli("tenant", "quota", "set", key["tenant"], *args, check=False)
        assert p.returncode != 0 and p.stderr.strip(), args
    p = kora.cli("tenant", "quota", "remove", key["tenant"], "no_such_quota", check=False)
    assert p.returncode != 0 and "no_such_quota" in p.stderr, "an operator's typo is named"
    p = kora.cli("tenant", "quota", "show", "no-such-tenant", check=False)
    assert p.returncode != 0 and "unknown tenant" in p.stderr


def test_quotas_survive_a_restart():
    k = Kora(extra=["--auth"])
    try:
        key = new_tenant(k, "q-restart")
        k.cli("tenant", "quota", "set", key["tenant"], "--producer-byte-rate", "1MiB", "--max-connections", "50",
              "--controller-mutation-rate", "2.5")
        k.restart()
        shown = k.cli("tenant", "quota", "show", key["tenant"])
        assert shown["quotas"] == {"producer_byte_rate": 1048576.0, "max_connections": 50.0,
                                   "controller_mutation_rate": 2.5}
        k.cli("tenant", "delete", key["tenant"])
        again = k.cli("tenant", "create", "q-restart", "--id", key["tenant"])
        assert k.cli("tenant", "quota", "show", again["tenant"]["id"])["quotas"] == {}, \
            "a deleted tenant's quotas went with it"
    finally:
        k.stop()


def test_max_connections_left_unset_follows_the_open_file_limit():
    """With max.connections unset, a broker whose process may open 1024 files keeps 512 for
    segment files and 128 in reserve, and takes 384 client connections: the 385th is closed
    at once (not an EMFILE later, with logs unable to open), and DescribeConfigs says 384."""
    import resource
    from confluent_kafka.admin import AdminClient, ConfigResource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:
        k = Kora()  # inherits the limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    socks = []

    def served(s, corr):
        try:
            return _frame(s, 18, 0, corr, b"", False) is not None
        except ConnectionResetError:
            return False

    try:
        host, port = k.bootstrap.rsplit(":", 1)
        for i in range(384):
            s = socket.create_connection((host, int(port)), timeout=10)
            socks.append(s)
            assert served(s, i), f"connection {i + 1} refused"
        over = socket.create_connection((host, int(port)), timeout=10)
        socks.append(over)
        assert not served(over, 999), "the 385th connection was served"
        for s in socks:
            s.close()
        socks.clear()
        time.sleep(0.5)
        admin = AdminClient({"bootstrap.servers": k.bootstrap})
        res = admin.describe_configs([ConfigResource("broker", "1")])
        configs = list(res.values())[0].result(30)
        assert configs["max.connections"].value == "384"
    finally:
        for s in socks:
            s.close()
        k.stop()
