"""A broker whose disk falls behind learns an ingress limit by itself, with no operator in the
loop: `kora dev --auth` with a simulated slow disk (fault injection: produce appends queue as
on a device that writes 1 MiB/s), two tenants offering together 8x what it writes. The broker
sees its appends take longer than quota.broker.append.ms, limits ingress to about what the
disk takes, and scales both tenants down in proportion to their quotas; librdkafka is
throttled, not failed, and once the disk is fast again the limit goes away."""
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Kora
from test_tenants import new_tenant, sasl

MIB = 1024 * 1024
DISK = 1 * MIB
PARTITIONS = 8


def offer(conf, rate, stop, delivered, errors, record=1024):
    """Produces `rate` bytes/s of `record`-byte records until `stop` is set."""
    p = Producer(conf)

    def done(err, msg):
        if err is None:
            delivered.append(time.monotonic())
        else:
            errors.append(str(err))

    payload = b"d" * record
    t0, sent = time.monotonic(), 0
    while not stop.is_set():
        due = int((time.monotonic() - t0) * rate / record)
        while sent < due:
            try:
                # Over every partition: each produce request carries a batch for each, so a
                # client keeps many appends queued on the disk.
                p.produce("disk", payload, partition=sent % PARTITIONS, on_delivery=done)
                sent += 1
            except BufferError:
                sent = due  # the local queue is full: offered above what is taken
                break
        p.poll(0.005)
    p.flush(120)


def test_a_broker_whose_disk_falls_behind_limits_ingress_in_proportion_to_quotas():
    k = Kora(extra=["--auth", "--set", "fault.injection.enable=true"])
    try:
        quotas = {"small": 2 * MIB, "big": 6 * MIB}
        confs = {}
        for name, q in quotas.items():
            key = new_tenant(k, name)
            k.cli("tenant", "quota", "set", key["tenant"], "--producer-byte-rate", str(q))
            confs[name] = {**sasl(k, key), "acks": "all", "linger.ms": 5, "batch.size": 65536,
                           "queue.buffering.max.kbytes": 4096, "message.timeout.ms": 120000}
            admin = AdminClient(sasl(k, key))
            for f in admin.create_topics([NewTopic("disk", PARTITIONS, 1)]).values():
                f.result(30)
        assert k.gauge("kora_ingress_limit_bytes_per_second") == 0, "no limit before the disk slows"
        assert k.admin_call("PUT", "/v1/faults/disk", {"bytes_per_second": DISK}) == {"bytes_per_second": DISK}
        stop = threading.Event()
        delivered = {n: [] for n in quotas}
        errors = {n: [] for n in quotas}
        threads = [threading.Thread(target=offer, args=(confs[n], quotas[n], stop, delivered[n], errors[n]))
                   for n in quotas]
        started = time.monotonic()
        for t in threads:
            t.start()
        # Learning takes a few windows; measure the 25 s after the first 15.
        limits, appends = [], []
        while time.monotonic() < started + 40:
            time.sleep(1)
            limits.append(k.gauge("kora_ingress_limit_bytes_per_second"))
            appends.append(k.gauge("kora_append_p90_micros"))
        stop.set()
        for t in threads:
            t.join(150)
        lo, hi = started + 15, started + 40
        took = {n: 1024 * len([t for t in delivered[n] if lo <= t < hi]) / (hi - lo) for n in quotas}
        total = sum(took.values())
        per_second = [sum(1 for n in quotas for t in delivered[n] if started + i <= t < started + i + 1)
                      for i in range(40)]
        summary = {n: f"{v / MIB:.2f} MiB/s" for n, v in took.items()}
        summary["KiB delivered per second"] = per_second
        summary["append p90 ms"] = [a // 1000 for a in appends]
        assert all(x > 0 for x in limits[15:]), f"the broker learned no ingress limit: {limits}, {summary}"
        assert max(limits[15:]) < 4 * DISK, f"the learned limit stays near what the disk takes: {limits}"
        # Offered 8 MiB/s to a 1 MiB/s disk: the broker takes about what the disk writes (the
        # AIMD saw-tooth runs a little under and over it), not what it is offered.
        assert 0.5 * DISK <= total <= 1.5 * DISK, f"took {total / MIB:.2f} MiB/s: {summary}"
        # Scaled in proportion to the quotas (1:3).
        share = took["small"] / total
        assert 0.15 <= share <= 0.35, f"small's share {share:.0%} against 25%: {summary}"
        assert not errors["small"] and not errors["big"], f"throttled, not failed: {errors}"
        # A fast disk again: appends are quick and the learned limit goes away.
        assert k.admin_call("DELETE", "/v1/faults/disk") == {"bytes_per_second": None}
        deadline = time.monotonic() + 60
        p = Producer(confs["small"])
        while k.gauge("kora_ingress_limit_bytes_per_second") != 0:
            assert time.monotonic() < deadline, "the learned limit outlived the slow disk"
            p.produce("disk", b"x" * 1024)
            p.poll(0.2)
        p.flush(30)
    finally:
        k.stop()
