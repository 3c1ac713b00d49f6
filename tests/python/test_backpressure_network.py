"""A broker whose network falls behind learns an egress limit by itself, with no operator in the
loop: `kora dev --auth` with a simulated slow network (fault injection: every response queues
behind those sent before it, as on a link of 8 MiB/s), two tenants' consumers asking together
for 4x what it sends. The broker sees responses take longer than quota.broker.send.ms to
leave, limits egress to about what the link carries, and scales both tenants' fetches down in
proportion to their quotas (without it they split the link by connection, evenly); librdkafka
is throttled, not failed, and once the network is fast again the limit goes away."""
import threading
import time
import urllib.error

import pytest

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Kora
from test_tenants import new_tenant, sasl

MIB = 1024 * 1024
LINK = 8 * MIB
PARTITIONS = 4
RECORD = 16 * 1024
# Records per partition: 4 MiB each, read over and over.
PER_PARTITION = 256
CONSUMERS = 6


def fill(conf):
    # Batches of 64 KiB: a fetch returns at least one whole batch, so they bound its size.
    p = Producer({**conf, "linger.ms": 20, "batch.size": 64 * 1024})
    payload = b"n" * RECORD
    for i in range(PER_PARTITION * PARTITIONS):
        while True:
            try:
                p.produce("net", payload, partition=i % PARTITIONS)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(60) == 0


def consume(conf, stop, got, errors):
    """Reads the topic from the start over and over, counting (time, bytes) per batch."""
    c = Consumer({**conf, "group.id": "net", "enable.auto.commit": False, "enable.partition.eof": True,
                  "max.partition.fetch.bytes": 64 * 1024, "fetch.max.bytes": 256 * 1024,
                  "message.max.bytes": 256 * 1024, "queued.max.messages.kbytes": 1024})
    start = [TopicPartition("net", p, 0) for p in range(PARTITIONS)]
    c.assign(start)
    at_end = set()
    while not stop.is_set():
        for m in c.consume(200, 0.2):
            if m.error() is None:
                got.append((time.monotonic(), len(m.value())))
            elif m.error().code() == -191:  # _PARTITION_EOF
                at_end.add(m.partition())
            else:
                errors.append(str(m.error()))
        if len(at_end) == PARTITIONS:
            at_end.clear()
            c.assign(start)
    c.close()


def test_a_broker_whose_network_falls_behind_limits_egress_in_proportion_to_quotas():
    k = Kora(extra=["--auth", "--set", "fault.injection.enable=true"])
    try:
        quotas = {"small": LINK, "big": 3 * LINK}
        confs = {}
        for name, q in quotas.items():
            key = new_tenant(k, name)
            k.cli("tenant", "quota", "set", key["tenant"], "--consumer-byte-rate", str(q))
            confs[name] = sasl(k, key)
            admin = AdminClient(confs[name])
            for f in admin.create_topics([NewTopic("net", PARTITIONS, 1)]).values():
                f.result(30)
            fill(confs[name])
        assert k.gauge("kora_egress_limit_bytes_per_second") == 0, "no limit before the network slows"
        assert k.admin_call("PUT", "/v1/faults/network", {"bytes_per_second": LINK}) == {"bytes_per_second": LINK}
        stop = threading.Event()
        got = {n: [] for n in quotas}
        errors = {n: [] for n in quotas}
        threads = [threading.Thread(target=consume, args=(confs[n], stop, got[n], errors[n]))
                   for n in quotas for _ in range(CONSUMERS)]
        started = time.monotonic()
        for t in threads:
            t.start()
        limits, sends = [], []
        while time.monotonic() < started + 40:
            time.sleep(1)
            limits.append(k.gauge("kora_egress_limit_bytes_per_second"))
            sends.append(k.gauge("kora_send_p90_micros"))
        stop.set()
        for t in threads:
            t.join(60)
        lo, hi = started + 15, started + 40
        took = {n: sum(b for t, b in got[n] if lo <= t < hi) / (hi - lo) for n in quotas}
        total = sum(took.values())
        summary = {n: f"{v / MIB:.2f} MiB/s" for n, v in took.items()}
        summary["limit MiB/s"] = [round(x / MIB, 2) for x in limits]
        summary["send p90 ms"] = [s // 1000 for s in sends]
        # In force all along once learned (it may be dropped once after 20 calm windows, and
        # learned again).
        assert sum(x > 0 for x in limits[15:]) >= 0.8 * len(limits[15:]), f"no egress limit learned: {summary}"
        assert max(limits[15:]) < 3 * LINK, f"the learned limit stays near what the link sends: {summary}"
        # Asked for 32 MiB/s over an 8 MiB/s link: the tenants get about what it carries.
        assert 0.4 * LINK <= total <= 1.2 * LINK, f"took {total / MIB:.2f} MiB/s: {summary}"
        # In proportion to the quotas (1:3), where the link alone splits by connection (1:1).
        share = took["small"] / total
        assert 0.15 <= share <= 0.37, f"small's share {share:.0%} against 25%: {summary}"
        assert not errors["small"] and not errors["big"], f"throttled, not failed: {errors}"
        # A fast network again: responses leave at once and the learned limit goes away.
        assert k.admin_call("DELETE", "/v1/faults/network") == {"bytes_per_second": None}
        deadline = time.monotonic() + 60
        c = Consumer({**confs["small"], "group.id": "after", "auto.offset.reset": "earliest"})
        c.assign([TopicPartition("net", p, 0) for p in range(PARTITIONS)])
        while k.gauge("kora_egress_limit_bytes_per_second") != 0:
            assert time.monotonic() < deadline, "the learned limit outlived the slow network"
            c.consume(100, 0.2)
        c.close()
    finally:
        k.stop()


@pytest.mark.parametrize("device", ["disk", "network"])
def test_a_slow_device_fault_is_refused_unless_injection_is_enabled(device):
    k = Kora(extra=["--auth"])
    try:
        try:
            k.admin_call("PUT", f"/v1/faults/{device}", {"bytes_per_second": LINK})
            raise AssertionError(f"a slow {device} was injected with fault.injection.enable off")
        except urllib.error.HTTPError as e:
            assert e.code == 404 and b"fault.injection.enable" in e.read()
    finally:
        k.stop()
