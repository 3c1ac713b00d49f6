#!/usr/bin/env python3
"""Noisy neighbours and backpressure on one `kora dev --auth` (release build), with librdkafka
producers (confluent-kafka), one process per tenant, each paced to an offered rate.

1. Noisy neighbour: three quiet tenants produce at 95% of their quota, first alone (the
   baseline), then beside a noisy tenant offering 10x its quota. Reported per tenant: achieved
   bytes/s after the first 12 s (the windows' initial burst), p50 and p99 produce latency
   (produce() to delivery, acks=all), and the noisy tenant against its quota.
2. Oversubscription: four tenants with quotas in proportion 1:2:3:4 each offer their quota,
   together twice the broker's safe ingress limit (quota.broker.ingress.bytes.per.second).
   Reported: each tenant's share of what the broker took against its share of the quotas, and
   p99 latency; any error other than throttling is counted.
3. Accounting cost (--only cost): `kora bench produce` as fast as it goes, as a tenant without
   quotas and as one whose produce, fetch and request quotas are all set (far above what it
   can use, so it is never throttled but every request is checked against them), and, for
   reference, on a second `kora dev` without --auth (no tenant, no SASL), alternated in one
   run, --repeat rounds, each on fresh servers. Reported: MB/s, p50/p99 and the server's CPU
   seconds per GB produced for each (medians), and each against the next.
4. Slow disk (--only disk): the broker's disk slowed to --disk-mib MiB/s (fault injection:
   produce appends queue as on a device that writes that much), two tenants with quotas 1:3
   offering together --disk-over times that, over 8 partitions each; run with the ingress limit learned from
   append times (quota.broker.append.ms, the default 50) and, for reference, without
   (quota.broker.append.ms=0). Reported: what each tenant got, its share against its share of
   the quotas, p50/p99 produce latency, and the learned limit's range.

    python3 examples/bench_quotas.py [--quota-mib 2] [--seconds 60] [--size 1024]
    python3 examples/bench_quotas.py --only cost [--repeat 3] [--messages 500000]
5. A cell (--only cell): `kora cell up --auth` (3 brokers, 3 voters); a tenant with a
   --quota-mib quota offering 3x it over 6 partitions (replication 1, leaders on all three
   brokers) beside a quiet tenant at half its quota, first the quiet one alone. Reported: the
   capped tenant's rate over the cell against its quota, each broker's part of it and the
   bound each enforces (`kora tenant usage`), and what the quiet tenant kept.

6. Slow network (--only network): the broker's network slowed to --link-mib MiB/s (fault
   injection: every response queues behind those sent before it, as on a saturated NIC), two
   tenants with consumer quotas 1:3 asking together --link-over times that, each with
   --consumers librdkafka consumers (one process each) reading a filled topic over and over;
   run with the egress limit learned from send times (quota.broker.send.ms: --send-ms, the default 50)
   and, for reference, without (quota.broker.send.ms=0). Reported: what each tenant got, its
   share against its share of the quotas, the send-time p90 the broker saw, and the learned
   limit's range.

    python3 examples/bench_quotas.py --only disk [--disk-mib 2] [--disk-over 4] [--seconds 60]
    python3 examples/bench_quotas.py --only cell [--quota-mib 2] [--seconds 60]
    python3 examples/bench_quotas.py --only network [--link-mib 16] [--link-over 4] [--consumers 4] [--send-ms 50]

Prints a markdown table for docs/benchmarks.md and exits non-zero when a target is missed.
"""
import argparse
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from apache_kafka import free_port  # noqa: E402
import kora_admin  # noqa: E402

KORA = os.environ.get("KORA_BIN", os.path.join(ROOT, "target", "release", "kora"))
MIB = 1024 * 1024
# Throughput is measured over whole quota windows (quota.window.num x size = 11 s) after the
# first: a tenant over its quota takes the windows' allowance in bursts, one per 11 s (Kafka's
# windowed rate does the same), so a span that is not a multiple of 11 s would count one burst
# too many or too few.
WARMUP_S = 10.5
CYCLE_S = 11.0


class Kora:
    def __init__(self, *sets, auth=True):
        self.tmp = tempfile.TemporaryDirectory()
        self.env = {**os.environ, "KORA_CONFIG_DIR": os.path.join(self.tmp.name, "config")}
        args = [KORA, "--output", "json", "dev", *(["--auth"] if auth else []), "--data-dir", os.path.join(self.tmp.name, "data"),
                "--listen", f"127.0.0.1:{free_port()}", "--admin-listen", "127.0.0.1:0"]
        for s in sets:
            args += ["--set", s]
        self.log = open(os.path.join(self.tmp.name, "kora.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, env=self.env)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("kora did not start: " + open(self.log.name).read()[-2000:])
        self.info = json.loads(line)

    def cli(self, *args):
        out = subprocess.run([KORA, "--output", "json", *args, "--admin", self.info["admin"]],
                             capture_output=True, text=True, env=self.env, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"kora {' '.join(args)}: {out.stderr}")
        return json.loads(out.stdout)

    def tenant(self, name, quota_bytes):
        created = self.cli("tenant", "create", name)
        self.cli("tenant", "quota", "set", created["tenant"]["id"], "--producer-byte-rate", str(int(quota_bytes)))
        return created["api_key"]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.tmp.cleanup()


def producer(bootstrap, key, rate, seconds, size, start_at, out, partitions=None):
    """One tenant: `rate` bytes/s of `size`-byte records for `seconds` from `start_at` (over
    `partitions` partitions in turn, created first, when given)."""
    from confluent_kafka import Producer
    conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
            "sasl.username": key["key"], "sasl.password": key["secret"], "acks": "all", "linger.ms": 2,
            "batch.size": 65536, "queue.buffering.max.kbytes": 4096, "message.timeout.ms": 120000}
    p = Producer(conf)
    lat, done, errors = [], [], []
    payload = b"q" * size

    def report(sent_at):
        def cb(err, msg):
            now = time.monotonic()
            if err is not None:
                errors.append(str(err))
            else:
                done.append(now)
                lat.append(now - sent_at)
        return cb

    if partitions:
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({k: v for k, v in conf.items() if k.startswith(("bootstrap", "security", "sasl"))})
        for f in admin.create_topics([NewTopic("bench", partitions, 1)]).values():
            f.result(30)
    where = (lambda n: {"partition": n % partitions}) if partitions else (lambda n: {})
    while time.monotonic() < start_at:
        time.sleep(0.01)
    # Create the topic before the clock starts.
    p.produce("bench", payload, on_delivery=report(time.monotonic()))
    p.flush(30)
    lat.clear(), done.clear()
    t0 = time.monotonic()
    end = t0 + seconds
    sent = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - t0) * rate / size)
        while sent < due:
            try:
                p.produce("bench", payload, on_delivery=report(time.monotonic()), **where(sent))
                sent += 1
            except BufferError:
                break  # the local queue is full: the offered load is above what is taken
        p.poll(0.002)
    p.flush(120)
    span = CYCLE_S * max(1, int((seconds - WARMUP_S) // CYCLE_S))
    lo, hi = t0 + WARMUP_S, t0 + WARMUP_S + span
    steady = [t for t in done if lo <= t < hi]
    steady_lat = sorted(l for t, l in zip(done, lat) if lo <= t < hi)
    out.put({
        "rate": len(steady) * size / span,
        "whole_run_rate": len([t for t in done if t < end]) * size / seconds,
        "p50_ms": 1000 * steady_lat[len(steady_lat) // 2] if steady_lat else None,
        "p99_ms": 1000 * steady_lat[int(len(steady_lat) * 0.99)] if steady_lat else None,
        "errors": errors[:3], "error_count": len(errors),
    })


def run(bootstrap, loads, seconds, size, partitions=None):
    """Runs one producer process per (name, key, offered rate); their results by name."""
    q = mp.Queue()
    start_at = time.monotonic() + 3
    procs = {}
    for name, key, rate in loads:
        pq = mp.Queue()
        proc = mp.Process(target=producer, args=(bootstrap, key, rate, seconds, size, start_at, pq, partitions))
        proc.start()
        procs[name] = (proc, pq)
    out = {}
    for name, (proc, pq) in procs.items():
        out[name] = pq.get(timeout=seconds + 200)
        proc.join(30)
    del q
    return out


def fmt(x, unit=""):
    return "-" if x is None else f"{x:.1f}{unit}"


def noisy_neighbour(a):
    quota = a.quota_mib * MIB
    k = Kora()
    try:
        quiet = [(f"quiet-{i}", k.tenant(f"quiet-{i}", quota), 0.95 * quota) for i in range(3)]
        noisy_key = k.tenant("noisy", quota)
        print(f"# baseline: 3 quiet tenants at 95% of {a.quota_mib} MiB/s, {a.seconds} s", file=sys.stderr)
        base = run(k.info["bootstrap"], quiet, a.seconds, a.size)
        print(f"# with a noisy tenant offering 10x its quota, {a.seconds} s", file=sys.stderr)
        # New tenants for the second phase, so no window carries over from the baseline.
        quiet2 = [(f"quiet-{i}", k.tenant(f"quiet2-{i}", quota), 0.95 * quota) for i in range(3)]
        both = run(k.info["bootstrap"], quiet2 + [("noisy", noisy_key, 10 * quota)], a.seconds, a.size)
    finally:
        k.stop()
    ok = True
    print(f"\n| tenant | offered | alone: MiB/s, p50 / p99 ms | beside noisy: MiB/s, p50 / p99 ms | kept | p99 ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, _, rate in quiet:
        b, w = base[name], both[name]
        kept = w["rate"] / b["rate"] if b["rate"] else 0
        ratio = (w["p99_ms"] / b["p99_ms"]) if b["p99_ms"] and w["p99_ms"] else None
        ok &= kept >= 0.95 and ratio is not None and ratio <= 2.0 and w["error_count"] == 0
        print(f"| {name} | {rate / MIB:.2f} MiB/s | {b['rate'] / MIB:.2f}, {fmt(b['p50_ms'])} / {fmt(b['p99_ms'])} | "
              f"{w['rate'] / MIB:.2f}, {fmt(w['p50_ms'])} / {fmt(w['p99_ms'])} | {kept:.1%} | {fmt(ratio, 'x')} |")
    n = both["noisy"]
    held = n["rate"] / quota
    ok &= 0.9 <= held <= 1.1
    print(f"| noisy | {10 * a.quota_mib} MiB/s | - | {n['rate'] / MIB:.2f} (quota {a.quota_mib}; whole run with "
          f"the first burst {n['whole_run_rate'] / MIB:.2f}) | {held:.1%} of quota | - |")
    return ok


def oversubscribed(a):
    limit = 4 * a.quota_mib * MIB  # the broker's safe ingress limit
    weights = [1, 2, 3, 4]
    quotas = [2 * limit * w / sum(weights) for w in weights]  # together 2x the limit
    k = Kora(f"quota.broker.ingress.bytes.per.second={int(limit)}")
    try:
        loads = [(f"t{w}", k.tenant(f"t{w}", q), q) for w, q in zip(weights, quotas)]
        print(f"# 4 tenants offering 2x the safe limit of {limit / MIB:.0f} MiB/s, {a.seconds} s", file=sys.stderr)
        got = run(k.info["bootstrap"], loads, a.seconds, a.size)
    finally:
        k.stop()
    total = sum(r["rate"] for r in got.values())
    ok = True
    print(f"\n| tenant | quota MiB/s | offered | took MiB/s | share of took | share of quotas | p99 ms | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (name, _, q), w in zip(loads, weights):
        r = got[name]
        share, want = r["rate"] / total, w / sum(weights)
        ok &= abs(share - want) <= 0.1 * want and r["error_count"] == 0
        print(f"| {name} | {q / MIB:.2f} | {q / MIB:.2f} | {r['rate'] / MIB:.2f} | {share:.1%} | {want:.1%} | "
              f"{fmt(r['p99_ms'])} | {r['error_count']} {r['errors'][:1]} |")
    print(f"| all | {sum(quotas) / MIB:.2f} | {sum(quotas) / MIB:.2f} | {total / MIB:.2f} (limit {limit / MIB:.0f}) | | | | |")
    return ok


def server_cpu_seconds(pid):
    """User + system CPU seconds of a process so far (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def accounting_cost(a):
    def login(key):
        return ["--set", "security.protocol=SASL_PLAINTEXT", "--set", "sasl.mechanism=PLAIN",
                "--set", f"sasl.username={key['key']}", "--set", f"sasl.password={key['secret']}"]

    runs = {name: [] for name in ["no tenant", "free", "metered"]}
    for rep in range(a.repeat):
        # Fresh servers each round: a long-running one's background work (segment uploads to
        # its object store, retention) would land on whichever run came later.
        k = Kora()
        plain = Kora(auth=False)  # the reference: no tenant, no SASL, nothing metered
        try:
            free = k.cli("tenant", "create", "free")["api_key"]
            created = k.cli("tenant", "create", "metered")
            big = str(100 * 1024 ** 3)
            k.cli("tenant", "quota", "set", created["tenant"]["id"], "--producer-byte-rate", big,
                  "--consumer-byte-rate", big, "--request-percentage", "10000")
            targets = {"no tenant": (plain, []), "free": (k, login(free)),
                       "metered": (k, login(created["api_key"]))}
            names = list(targets)
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                server, extra = targets[name]
                cpu0 = server_cpu_seconds(server.proc.pid)
                out = subprocess.run(
                    [KORA, "--output", "json", "bench", "produce", "--bootstrap", server.info["bootstrap"],
                     "--topic", f"cost-{name.replace(' ', '-')}", "--partitions", "8", "--messages",
                     str(a.messages), "--message-bytes", str(a.size), *extra],
                    capture_output=True, text=True, timeout=600)
                if out.returncode != 0:
                    raise RuntimeError(f"kora bench as {name}: {out.stderr[-2000:]}")
                r = json.loads(out.stdout)
                r["cpu_s_per_gb"] = (server_cpu_seconds(server.proc.pid) - cpu0) / (r["bytes"] / 1e9)
                runs[name].append(r)
                print(f"# {name} run {rep + 1}: {r['mb_per_s']:.1f} MB/s, p99 {r['latency']['p99_ms']:.1f} ms, "
                      f"{r['cpu_s_per_gb']:.2f} CPU s/GB, errors {r['errors']}", file=sys.stderr)
        finally:
            k.stop()
            plain.stop()

    def median(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    summary = {}
    print("\n| tenant | MB/s (median of runs) | p50 / p99 ms | server CPU s per GB | errors | runs, MB/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rs in runs.items():
        s = {"mb_per_s": median([r["mb_per_s"] for r in rs]),
             "p50_ms": median([r["latency"]["p50_ms"] for r in rs]),
             "p99_ms": median([r["latency"]["p99_ms"] for r in rs]),
             "cpu": median([r["cpu_s_per_gb"] for r in rs]), "errors": sum(r["errors"] for r in rs)}
        summary[name] = s
        each = ", ".join(f"{r['mb_per_s']:.1f}" for r in rs)
        print(f"| {name} | {s['mb_per_s']:.1f} | {s['p50_ms']:.1f} / {s['p99_ms']:.1f} | {s['cpu']:.2f} | "
              f"{s['errors']} | {each} |")
    n, f, m = summary["no tenant"], summary["free"], summary["metered"]
    print(f"\nmetered against free: throughput {m['mb_per_s'] / f['mb_per_s']:.1%}, "
          f"CPU per GB {m['cpu'] / f['cpu']:.1%}; free against no tenant: throughput "
          f"{f['mb_per_s'] / n['mb_per_s']:.1%}, CPU per GB {f['cpu'] / n['cpu']:.1%}")
    return all(s["errors"] == 0 for s in summary.values())


def slow_disk(a):
    import threading
    disk = a.disk_mib * MIB
    weights = {"t1": 1, "t3": 3}
    quotas = {n: a.disk_over * disk * w / sum(weights.values()) for n, w in weights.items()}
    results = {}
    for mode, sets in [("learned", [f"quota.broker.append.ms={a.append_ms}"]), ("off", ["quota.broker.append.ms=0"])]:
        k = Kora("fault.injection.enable=true", *sets)
        try:
            loads = [(n, k.tenant(f"{n}-{mode}", q), q) for n, q in quotas.items()]
            kora_admin.call(k.info, "PUT", "/v1/faults/disk", {"bytes_per_second": int(disk)})
            limits, stop = [], threading.Event()

            def watch():
                while not stop.wait(1.0):
                    limits.append(kora_admin.metric(k.info, "kora_ingress_limit_bytes_per_second"))
            w = threading.Thread(target=watch)
            w.start()
            print(f"# slow disk of {a.disk_mib} MiB/s, limit {mode}: 2 tenants offering "
                  f"{sum(quotas.values()) / MIB:.0f} MiB/s, {a.seconds} s", file=sys.stderr)
            got = run(k.info["bootstrap"], loads, a.seconds, a.size, partitions=8)
            stop.set()
            w.join()
            results[mode] = (got, limits)
        finally:
            k.stop()
    ok = True
    print(f"\n| ingress limit | tenant | quota MiB/s | offered | took MiB/s | share of took | share of quotas "
          f"| p50 / p99 ms | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode, (got, limits) in results.items():
        total = sum(r["rate"] for r in got.values())
        for n, q in quotas.items():
            r = got[n]
            share, want = r["rate"] / total, weights[n] / sum(weights.values())
            if mode == "learned":
                ok &= abs(share - want) <= 0.1 and r["error_count"] == 0
            print(f"| {mode} | {n} | {q / MIB:.1f} | {q / MIB:.1f} | {r['rate'] / MIB:.2f} | {share:.1%} | {want:.1%} "
                  f"| {fmt(r['p50_ms'])} / {fmt(r['p99_ms'])} | {r['error_count']} |")
        steady = [x for x in limits[15:] if x is not None]
        span = f"{min(steady) / MIB:.2f}-{max(steady) / MIB:.2f} MiB/s" if steady and max(steady) > 0 else "none"
        print(f"| {mode} | all | | {sum(quotas.values()) / MIB:.1f} | {total / MIB:.2f} (disk {a.disk_mib}) | | | "
              f"learned limit after 15 s: {span} | |")
    return ok


NET_PARTITIONS = 4
NET_RECORD = 16 * 1024


def fill_topic(bootstrap, key, mib_per_partition):
    """Creates `net` (NET_PARTITIONS partitions) as the tenant and fills it, in 64 KiB batches
    (a fetch returns at least one whole batch, so they bound a response's size)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
            "sasl.username": key["key"], "sasl.password": key["secret"]}
    admin = AdminClient(conf)
    for f in admin.create_topics([NewTopic("net", NET_PARTITIONS, 1)]).values():
        f.result(30)
    p = Producer({**conf, "linger.ms": 20, "batch.size": 65536})
    payload = b"n" * NET_RECORD
    for i in range(int(mib_per_partition * MIB / NET_RECORD) * NET_PARTITIONS):
        while True:
            try:
                p.produce("net", payload, partition=i % NET_PARTITIONS)
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(120) != 0:
        raise RuntimeError("filling the topic failed")


def consumer(bootstrap, key, seconds, start_at, out):
    """One consumer: reads `net` from the start over and over for `seconds` from `start_at`;
    the bytes it got per whole second and its errors."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
                  "sasl.username": key["key"], "sasl.password": key["secret"], "group.id": "net",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "max.partition.fetch.bytes": 65536, "fetch.max.bytes": 262144, "message.max.bytes": 262144,
                  "queued.max.messages.kbytes": 1024})
    start = [TopicPartition("net", p, 0) for p in range(NET_PARTITIONS)]
    c.assign(start)
    per_second, errors, at_end = [0] * seconds, [], set()
    while time.monotonic() < start_at:
        time.sleep(0.01)
    while time.monotonic() < start_at + seconds:
        for m in c.consume(500, 0.2):
            if m.error() is None:
                i = int(time.monotonic() - start_at)
                if i < seconds:
                    per_second[i] += len(m.value())
            elif m.error().code() == -191:  # _PARTITION_EOF: read it again
                at_end.add(m.partition())
            else:
                errors.append(str(m.error()))
        if len(at_end) == NET_PARTITIONS:
            at_end.clear()
            c.assign(start)
    c.close()
    out.put({"per_second": per_second, "errors": errors[:3], "error_count": len(errors)})


def slow_network(a):
    import threading
    link = a.link_mib * MIB
    weights = {"t1": 1, "t3": 3}
    quotas = {n: a.link_over * link * w / sum(weights.values()) for n, w in weights.items()}
    results = {}
    for mode, sets in [("learned", [f"quota.broker.send.ms={a.send_ms}"]), ("off", ["quota.broker.send.ms=0"])]:
        k = Kora("fault.injection.enable=true", *sets)
        try:
            keys = {}
            for n, q in quotas.items():
                created = k.cli("tenant", "create", f"{n}-{mode}")
                k.cli("tenant", "quota", "set", created["tenant"]["id"], "--consumer-byte-rate", str(int(q)))
                keys[n] = created["api_key"]
                fill_topic(k.info["bootstrap"], keys[n], 8)
            kora_admin.call(k.info, "PUT", "/v1/faults/network", {"bytes_per_second": int(link)})
            samples, stop = [], threading.Event()

            def watch():
                while not stop.wait(1.0):
                    samples.append((kora_admin.metric(k.info, "kora_egress_limit_bytes_per_second"),
                                    kora_admin.metric(k.info, "kora_send_p90_micros")))
            w = threading.Thread(target=watch)
            w.start()
            print(f"# slow network of {a.link_mib} MiB/s, limit {mode}: 2 tenants x {a.consumers} consumers "
                  f"asking {sum(quotas.values()) / MIB:.0f} MiB/s, {a.seconds} s", file=sys.stderr)
            start_at = time.monotonic() + 3
            procs = []
            for n in quotas:
                for _ in range(a.consumers):
                    pq = mp.Queue()
                    proc = mp.Process(target=consumer, args=(k.info["bootstrap"], keys[n], a.seconds, start_at, pq))
                    proc.start()
                    procs.append((n, proc, pq))
            got = {n: {"per_second": [0] * a.seconds, "error_count": 0} for n in quotas}
            for n, proc, pq in procs:
                r = pq.get(timeout=a.seconds + 120)
                proc.join(30)
                got[n]["per_second"] = [x + y for x, y in zip(got[n]["per_second"], r["per_second"])]
                got[n]["error_count"] += r["error_count"]
            stop.set()
            w.join()
            results[mode] = (got, samples)
        finally:
            k.stop()
    ok = True
    warm = 15
    print("\n| egress limit | tenant | quota MiB/s | took MiB/s | share of took | share of quotas | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for mode, (got, samples) in results.items():
        rate = {n: sum(g["per_second"][warm:]) / (a.seconds - warm) for n, g in got.items()}
        total = sum(rate.values())
        for n, q in quotas.items():
            share, want = rate[n] / total, weights[n] / sum(weights.values())
            if mode == "learned":
                ok &= abs(share - want) <= 0.1 and got[n]["error_count"] == 0
            print(f"| {mode} | {n} | {q / MIB:.1f} | {rate[n] / MIB:.2f} | {share:.1%} | {want:.1%} "
                  f"| {got[n]['error_count']} |")
        steady = samples[warm:]
        limits = [x for x, _ in steady if x]
        span = f"{min(limits) / MIB:.2f}-{max(limits) / MIB:.2f} MiB/s" if limits else "none"
        sends = sorted(s for _, s in steady if s is not None)
        p90s = f"{sends[len(sends) // 2] / 1000:.0f} ms median, {sends[-1] / 1000:.0f} ms max" if sends else "-"
        print(f"| {mode} | all | {sum(quotas.values()) / MIB:.1f} asked | {total / MIB:.2f} (link {a.link_mib:g}) | | | "
              f"send p90 {p90s}; learned limit after {warm} s: {span} |")
    return ok


class KoraCell(Kora):
    """`kora cell up --auth` with 3 brokers and 3 voters on 127.0.0.1 (the CLI talks to the
    first broker's admin endpoint)."""

    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.env = {**os.environ, "KORA_CONFIG_DIR": os.path.join(self.tmp.name, "config")}
        self.log = open(os.path.join(self.tmp.name, "cell.log"), "wb")
        self.proc = subprocess.Popen(
            [KORA, "--output", "json", "cell", "up", "--auth", "--brokers", "3", "--voters", "3",
             "--data-dir", os.path.join(self.tmp.name, "cell")],
            stdout=subprocess.PIPE, stderr=self.log, env=self.env, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the cell did not start: " + open(self.log.name).read()[-2000:])
        self.info = json.loads(line)
        self.info["bootstrap"] = self.info["sasl_bootstrap"]
        self.info["admin"] = self.info["brokers"][0]["admin"]

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.tmp.cleanup()


def cell_split(a):
    import threading
    quota = a.quota_mib * MIB
    c = KoraCell()
    try:
        quiet = c.tenant("quiet", quota)
        alone = run(c.info["bootstrap"], [("quiet", quiet, 0.5 * quota)], a.seconds, a.size, partitions=6)
        capped = c.tenant("capped", quota)
        quiet2 = c.tenant("quiet2", quota)
        usage, stop = [], threading.Event()

        def watch():
            while not stop.wait(3.0):
                try:
                    usage.append(c.cli("tenant", "usage", capped["tenant"]))
                except RuntimeError:
                    pass
        w = threading.Thread(target=watch)
        w.start()
        print(f"# a cell: a tenant offering 3x its {a.quota_mib} MiB/s quota beside a quiet one, {a.seconds} s",
              file=sys.stderr)
        both = run(c.info["bootstrap"], [("capped", capped, 3 * quota), ("quiet", quiet2, 0.5 * quota)],
                   a.seconds, a.size, partitions=6)
        stop.set()
        w.join()
    finally:
        c.stop()
    got = both["capped"]
    held = got["rate"] / quota
    kept = both["quiet"]["rate"] / alone["quiet"]["rate"] if alone["quiet"]["rate"] else 0
    ok = 0.9 <= held <= 1.1 and kept >= 0.95 and got["error_count"] == 0
    later = [u for u in usage[len(usage) // 3:]]
    parts = {}
    for u in later:
        for b in u["brokers"]:
            parts.setdefault(b["broker_id"], []).append((b["usage"]["produce_bytes_per_second"],
                                                         b["bounds"].get("producer_byte_rate", 0)))
    print("\n| tenant | quota MiB/s | offered | took over the cell MiB/s | against quota | p50 / p99 ms | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| capped | {a.quota_mib:.1f} | {3 * a.quota_mib:.1f} | {got['rate'] / MIB:.2f} | {held:.1%} | "
          f"{fmt(got['p50_ms'])} / {fmt(got['p99_ms'])} | {got['error_count']} |")
    q, q0 = both["quiet"], alone["quiet"]
    print(f"| quiet | {a.quota_mib:.1f} | {0.5 * a.quota_mib:.1f} | {q['rate'] / MIB:.2f} (alone {q0['rate'] / MIB:.2f}) "
          f"| kept {kept:.1%} | {fmt(q['p50_ms'])} / {fmt(q['p99_ms'])} (alone {fmt(q0['p50_ms'])} / "
          f"{fmt(q0['p99_ms'])}) | {q['error_count']} |")
    print("\n| broker | capped tenant's produce here, MiB/s (mean of readings) | bound it enforces, MiB/s |")
    print("| --- | --- | --- |")
    for b, xs in sorted(parts.items()):
        print(f"| {b} | {sum(x for x, _ in xs) / len(xs) / MIB:.2f} | {sum(y for _, y in xs) / len(xs) / MIB:.2f} |")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quota-mib", type=float, default=2.0, help="each quiet tenant's quota, MiB/s")
    ap.add_argument("--seconds", type=int, default=60, help="per phase; measured over whole 11 s windows after the first")
    ap.add_argument("--size", type=int, default=1024, help="record bytes")
    ap.add_argument("--only", choices=["noisy", "oversubscribed", "cost", "disk", "cell", "network"])
    ap.add_argument("--disk-mib", type=float, default=2.0, help="disk: the simulated disk's MiB/s")
    ap.add_argument("--disk-over", type=float, default=4.0, help="disk: offered load, multiple of the disk")
    ap.add_argument("--append-ms", type=int, default=50, help="disk: quota.broker.append.ms of the learned run")
    ap.add_argument("--link-mib", type=float, default=16.0, help="network: the simulated link's MiB/s")
    ap.add_argument("--link-over", type=float, default=4.0, help="network: consumers' quotas, multiple of the link")
    ap.add_argument("--send-ms", type=int, default=50, help="network: quota.broker.send.ms of the learned run")
    ap.add_argument("--consumers", type=int, default=4, help="network: consumers per tenant")
    ap.add_argument("--repeat", type=int, default=3, help="cost: runs per tenant")
    ap.add_argument("--messages", type=int, default=500000, help="cost: records per run")
    a = ap.parse_args()
    ok = True
    if a.only in (None, "noisy"):
        ok &= noisy_neighbour(a)
    if a.only in (None, "oversubscribed"):
        ok &= oversubscribed(a)
    if a.only in (None, "cost"):
        ok &= accounting_cost(a)
    if a.only in (None, "disk"):
        ok &= slow_disk(a)
    if a.only in (None, "cell"):
        ok &= cell_split(a)
    if a.only in (None, "network"):
        ok &= slow_network(a)
    print("\ntargets met" if ok else "\ntargets MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
