"""Kora and Apache Kafka side by side, with the null sink as the limit: docs/benchmarks.md's
"Kora and Apache Kafka" table.

    cargo build --release -p kora && ./scripts/setup-java-deps.sh
    python3 examples/bench_peers.py [--repeat 3] [--cells] [--messages 1000000] [--json FILE]

In one run on this machine, one server at a time, each with a fresh data dir and port:
  - the null sink (`kora bench sink`: the Kafka protocol answered without storage; the limit);
  - Kora (`kora dev`), at its default durability (an acknowledged record is in the page cache,
    each closed segment is fsynced: the same class as Kafka's default), then with
    log.flush.interval.messages=1 (fsync before every acknowledgement);
  - Apache Kafka 4.1.2 (KRaft, one combined broker+controller, the start script's 1 GiB heap,
    from the Maven Central jars scripts/setup-java-deps.sh cached), at its default durability
    (acks=all reaches the page cache of the in-sync replicas; no fsync per message), then with
    log.flush.interval.messages=1;
  - with --cells: a 3-broker Kora cell (`kora cell up`: 3 brokers and 3 metadata voters) and a
    3-node Kafka (3 combined broker+controller nodes), min.insync.replicas=2, replication 3.

Each server first takes --warmup-messages (default 300000) on a topic of its own, so the JVM's
JIT compiler is warm before anything is measured; then each gets the same load from the same
generators: `kora bench produce` (librdkafka,
acks=all, linger 5 ms, 1 MiB batches, 8 partitions) and `kora bench consume`, an open loop at
20 MB/s for 15 s (latency p50/p99/p999), and Kafka's own kafka-producer-perf-test with the same
record size and producer settings. It reports MB/s, latency, the servers' CPU seconds per GB
produced, their resident memory (RSS now and its peak, VmHWM, summed over the server's
processes) and their start-up time (spawn until the Kafka port accepts connections and a
Metadata request lists every broker).
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apache_kafka import ApacheKafka, classpath  # noqa: E402
from bench_produce import KORA, binary, cpu_seconds, first_line, free_port, med, fmt  # noqa: E402

PERF_TEST = "org.apache.kafka.tools.ProducerPerformance"
START_TIMEOUT_S = 120


def rss_kib(pids):
    """(VmRSS, VmHWM, Pss) summed over `pids`, in KiB. RSS counts pages shared between the
    processes (the kora binary's mapped code) once per process; PSS shares them out, so its
    sum is what the processes together hold."""
    now = peak = pss = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    now += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak += int(line.split()[1])
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return now, peak, pss


class KoraServer:
    """`kora dev`, `kora cell up` or `kora bench sink`, started from the binary under test."""

    def __init__(self, kora, mode, extra=()):
        self.kora, self.mode, self.extra = kora, mode, list(extra)
        self.tmp = tempfile.mkdtemp(prefix=f"bench-peers-kora-{mode}-")
        self.proc = None
        self.pids = []

    def start(self):
        port = free_port()
        if self.mode == "sink":
            args = ["bench", "sink", "--listen", f"127.0.0.1:{port}"]
        elif self.mode == "dev":
            args = ["dev", "--data-dir", os.path.join(self.tmp, "data"), "--listen", f"127.0.0.1:{port}",
                    "--admin-listen", "127.0.0.1:0"]
        else:
            args = ["cell", "up", "--brokers", "3", "--voters", "3", "--data-dir", os.path.join(self.tmp, "cell"),
                    "--set", "min.insync.replicas=2", "--set", "default.replication.factor=3"]
        began = time.monotonic()
        self.proc = subprocess.Popen([self.kora, "--output", "json", *args, *self.extra], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        info = json.loads(first_line(self.proc, START_TIMEOUT_S))
        # Keep reading what it prints later, so a full pipe never blocks it.
        threading.Thread(target=lambda: self.proc.stdout.read(), daemon=True).start()
        self.bootstrap = info.get("bootstrap", f"127.0.0.1:{port}")
        if self.mode == "cell":
            self.pids = [b["pid"] for b in info["brokers"]] + [v["pid"] for v in info["voters"]]
        else:
            self.pids = [self.proc.pid]
        return began

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


class KafkaServer:
    def __init__(self, nodes, extra=None):
        extra = dict(extra or {})
        if nodes == 3:
            extra.setdefault("min.insync.replicas", "2")
        self.k = ApacheKafka(nodes=nodes, extra=extra)

    def start(self):
        self.k.start()  # formats the storage first, as kafka-storage.sh format would
        self.bootstrap, self.pids = self.k.bootstrap, self.k.pids
        return self.k.spawned_at

    def stop(self):
        self.k.stop()


def bench(kora, timeout, *args):
    cmd = [kora, "--output", "json", "bench", *args]
    try:
        out = subprocess.run(cmd, capture_output=True, check=True, text=True, timeout=timeout).stdout
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"{' '.join(cmd)} failed (status {e.returncode}): {e.stderr.strip()[-2000:]}") from e
    return json.loads(out.strip().splitlines()[-1])


def wait_ready(bootstrap, brokers, began, timeout=START_TIMEOUT_S):
    """Seconds from `began` until a Metadata request (confluent-kafka's AdminClient, installed
    by scripts/setup-test-deps.sh) lists every broker: the server can take requests."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = began + timeout
    while time.monotonic() < deadline:
        try:
            if len(admin.list_topics(timeout=1).brokers) >= brokers:
                return time.monotonic() - began
        except Exception:  # not up yet: KafkaException, transport errors
            time.sleep(0.02)
    raise TimeoutError(f"{bootstrap} did not list {brokers} brokers within {timeout} s")


PERF_LINE = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                       r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def perf_test(bootstrap, a, topic):
    """Kafka's own kafka-producer-perf-test, with the producer settings `kora bench` uses."""
    cmd = ["java", "-Xmx2g", "-cp", classpath(), PERF_TEST, "--topic", topic, "--num-records", str(a.messages),
           "--record-size", str(a.message_bytes), "--throughput", "-1", "--producer-props",
           f"bootstrap.servers={bootstrap}", "acks=all", "linger.ms=5", "batch.size=1048576",
           "buffer.memory=268435456"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
    m = None
    for line in out.stdout.splitlines():
        m = PERF_LINE.search(line) or m
    if out.returncode != 0 or not m:
        raise RuntimeError(f"kafka-producer-perf-test failed (status {out.returncode}): {out.stderr[-2000:]}")
    return {"mb_per_s": float(m.group(3)) * 1.048576, "records_per_s": float(m.group(2)),
            "avg_ms": float(m.group(4)), "p50_ms": float(m.group(6)), "p99_ms": float(m.group(8)),
            "p999_ms": float(m.group(9))}


def run_server(a, name, server, brokers, full):
    """One server through the whole sequence; `full` adds consume, latency and the perf test."""
    common = ["--messages", str(a.messages), "--message-bytes", str(a.message_bytes),
              "--partitions", str(a.partitions), "--acks", "all"]
    row = {"server": name}
    try:
        began = server.start()
        if brokers:
            row["start_s"] = wait_ready(server.bootstrap, brokers, began)
        row["rss_idle_kib"] = rss_kib(server.pids)[0]
        if a.warmup_messages:
            # The same load on a topic of its own first, so a JIT compiler is warm when measured.
            bench(a.kora, a.timeout, "produce", "--bootstrap", server.bootstrap, "--topic", "warmup", "--messages",
                  str(a.warmup_messages), "--message-bytes", str(a.message_bytes), "--partitions",
                  str(a.partitions), "--acks", "all")
        cpu0 = sum(cpu_seconds(p) for p in server.pids)
        row["produce"] = bench(a.kora, a.timeout, "produce", "--bootstrap", server.bootstrap, "--topic", "t", *common)
        cpu = sum(cpu_seconds(p) for p in server.pids) - cpu0
        row["produce"]["cpu_s_per_gb"] = cpu / (row["produce"]["bytes"] / 1e9)
        if full:
            os.sync()  # each phase starts without the previous one's dirty pages
            row["consume"] = bench(a.kora, a.timeout, "consume", "--bootstrap", server.bootstrap, "--topic", "t",
                                   "--consumers", "2")
            # The topics exist and have leaders before anything is timed: an open loop counts
            # from each record's scheduled time, so a topic still electing its leaders would
            # put its first seconds into the percentiles.
            for topic in ("lat", "perf"):
                bench(a.kora, a.timeout, "produce", "--bootstrap", server.bootstrap, "--topic", topic,
                      "--messages", "10000", "--message-bytes", str(a.message_bytes), "--partitions",
                      str(a.partitions), "--acks", "all")
            os.sync()
            row["latency20"] = bench(a.kora, a.timeout, "produce", "--bootstrap", server.bootstrap, "--topic", "lat",
                                     "--rate-mb", "20", "--duration-s", "15", "--linger-ms", "1",
                                     "--message-bytes", str(a.message_bytes), "--partitions", str(a.partitions),
                                     "--acks", "all")
            os.sync()
            row["perf_test"] = perf_test(server.bootstrap, a, "perf")
        row["rss_kib"], row["rss_peak_kib"], row["pss_kib"] = rss_kib(server.pids)
    finally:
        server.stop()
    print(f"  {name}: produce {row['produce']['mb_per_s']:.0f} MB/s"
          + (f", consume {row['consume']['mb_per_s']:.0f} MB/s, p99 {row['latency20']['latency']['p99_ms']:.2f} ms"
             f", perf-test {row['perf_test']['mb_per_s']:.0f} MB/s" if full else "")
          + f", RSS {row['rss_kib'] / 1024:.0f} MiB (peak {row['rss_peak_kib'] / 1024:.0f}, PSS "
          f"{row['pss_kib'] / 1024:.0f})", flush=True)
    return row


def servers(a):
    """(name, factory, brokers to wait for, full sequence) in the order they run."""
    flush1 = {"log.flush.interval.messages": "1"}
    out = [
        ("null sink", lambda: KoraServer(a.kora, "sink"), 0, False),
        ("Kora, default durability", lambda: KoraServer(a.kora, "dev"), 1, True),
        ("Apache Kafka 4.1.2, default durability", lambda: KafkaServer(1), 1, True),
        ("Kora, flush.messages=1", lambda: KoraServer(a.kora, "dev", ["--set", "log.flush.interval.messages=1"]), 1,
         False),
        ("Apache Kafka 4.1.2, flush.messages=1", lambda: KafkaServer(1, flush1), 1, False),
    ]
    if a.cells:
        out += [
            ("Kora cell, 3 brokers", lambda: KoraServer(a.kora, "cell"), 3, True),
            ("Apache Kafka 4.1.2, 3 nodes", lambda: KafkaServer(3), 3, True),
        ]
    return out


def print_tables(runs, names):
    by = {n: [r for rs in runs for r in rs if r["server"] == n] for n in names}
    g = lambda n, f: med([f(r) for r in by[n]]) if by[n] else None
    print("| server | produce MB/s | CPU s/GB | consume MB/s | p50 / p99 / p999 at 20 MB/s, ms | "
          "kafka-producer-perf-test MB/s (p99 ms) | RSS after, MiB (peak) | PSS after, MiB | start-up, s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in names:
        rows = by[n]
        if not rows:
            continue
        full = "consume" in rows[0]
        cells = [n, fmt(g(n, lambda r: r["produce"]["mb_per_s"]), ".0f"),
                 fmt(g(n, lambda r: r["produce"]["cpu_s_per_gb"]), ".2f")]
        if full:
            lat = lambda q: fmt(g(n, lambda r: r["latency20"]["latency"][q]), ".2f")
            cells += [fmt(g(n, lambda r: r["consume"]["mb_per_s"]), ".0f"),
                      f"{lat('p50_ms')} / {lat('p99_ms')} / {lat('p999_ms')}",
                      f"{fmt(g(n, lambda r: r['perf_test']['mb_per_s']), '.0f')} "
                      f"({fmt(g(n, lambda r: r['perf_test']['p99_ms']), '.0f')})"]
        else:
            cells += ["", "", ""]
        cells.append(f"{fmt(g(n, lambda r: r['rss_kib'] / 1024), '.0f')} "
                     f"({fmt(g(n, lambda r: r['rss_peak_kib'] / 1024), '.0f')})")
        cells.append(fmt(g(n, lambda r: r["pss_kib"] / 1024), ".0f"))
        cells.append(fmt(g(n, lambda r: r["start_s"]), ".2f") if "start_s" in rows[0] else "")
        print("| " + " | ".join(cells) + " |")


def ratios(runs, kora, kafka):
    """Kora/Kafka per repeat (paired), for the issue's goal: throughput >= 1.0x, p99 <= 0.5x,
    RSS <= 0.1x."""
    out = {}
    pairs = [(next(r for r in rs if r["server"] == kora), next(r for r in rs if r["server"] == kafka))
             for rs in runs if any(r["server"] == kora for r in rs) and any(r["server"] == kafka for r in rs)]
    if not pairs:
        return out
    out["produce"] = med([k["produce"]["mb_per_s"] / j["produce"]["mb_per_s"] for k, j in pairs])
    out["consume"] = med([k["consume"]["mb_per_s"] / j["consume"]["mb_per_s"] for k, j in pairs])
    out["p99"] = med([k["latency20"]["latency"]["p99_ms"] / j["latency20"]["latency"]["p99_ms"] for k, j in pairs])
    out["perf_test"] = med([k["perf_test"]["mb_per_s"] / j["perf_test"]["mb_per_s"] for k, j in pairs])
    out["rss"] = med([k["rss_kib"] / j["rss_kib"] for k, j in pairs])
    out["rss_peak"] = med([k["rss_peak_kib"] / j["rss_peak_kib"] for k, j in pairs])
    out["pss"] = med([k["pss_kib"] / j["pss_kib"] for k, j in pairs])
    out["start"] = med([k["start_s"] / j["start_s"] for k, j in pairs])
    return out


def main():
    ap = argparse.ArgumentParser(description="Kora, Apache Kafka and the null sink side by side, one run.")
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--message-bytes", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--warmup-messages", type=int, default=300_000,
                    help="messages produced to a separate topic before measuring (every server; 0: none)")
    ap.add_argument("--cells", action="store_true", help="also a 3-broker Kora cell and a 3-node Kafka")
    ap.add_argument("--only-cells", action="store_true", help="the cells alone (with the null sink)")
    ap.add_argument("--kora", type=binary, default=None, metavar="PATH",
                    help="the kora binary (default target/release/kora); its `kora bench` drives every server")
    ap.add_argument("--json", metavar="FILE", help="also write every raw figure to FILE")
    ap.add_argument("--timeout", type=float, default=600, metavar="S")
    a = ap.parse_args()
    if a.kora is None:
        a.kora = binary(KORA)
    classpath()  # resolves Apache Kafka's jars now rather than mid-run
    plan = servers(a)
    if a.only_cells:
        a.cells = True
        plan = servers(a)
        plan = plan[:1] + plan[5:]
    names = [n for n, _, _, _ in plan]
    runs = []
    for i in range(a.repeat):
        print(f"repeat {i + 1} of {a.repeat}", flush=True)
        order = plan if i % 2 == 0 else plan[:1] + plan[1:][::-1]
        runs.append([run_server(a, n, make(), brokers, full) for n, make, brokers, full in order])
    print()
    print(f"{a.repeat} repeat(s); cells: median [lowest-highest]; {a.messages} messages of {a.message_bytes} bytes, "
          f"{a.partitions} partitions, acks=all")
    print()
    print_tables(runs, names)
    for kora, kafka in [("Kora, default durability", "Apache Kafka 4.1.2, default durability"),
                        ("Kora cell, 3 brokers", "Apache Kafka 4.1.2, 3 nodes")]:
        r = ratios(runs, kora, kafka)
        if r:
            print()
            print(f"{kora} / {kafka} (median of paired repeats): produce {fmt(r['produce'], '.2f')}x, "
                  f"consume {fmt(r['consume'], '.2f')}x, perf-test {fmt(r['perf_test'], '.2f')}x, "
                  f"p99 at 20 MB/s {fmt(r['p99'], '.2f')}x, RSS {fmt(r['rss'], '.3f')}x "
                  f"(peak {fmt(r['rss_peak'], '.3f')}x), PSS {fmt(r['pss'], '.3f')}x, start-up {fmt(r['start'], '.2f')}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": vars(a), "runs": runs}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
