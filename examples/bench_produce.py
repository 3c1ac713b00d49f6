"""Reproduces the throughput/latency table of docs/benchmarks.md with `kora bench`.

Starts the null sink and Kora brokers (release build) on 127.0.0.1, runs the same generator
against each in one run, and prints a markdown table: produce MB/s (sink, fsync on roll,
flush.ms=10 group commit, flush.messages=1), the broker/sink ratios, consume from the head and
from disk (with librdkafka, and with the batch reader, `kora bench consume --client batches`), open-loop latency at 20 MB/s, and broker CPU seconds per produced GB.

    cargo build --release && python3 examples/bench_produce.py [--messages 1000000] [--repeat 3]

With --repeat N the whole sequence runs N times and each cell shows the median and, in
brackets, the lowest and highest run: on a small shared machine single runs vary a lot.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KORA = os.path.join(HERE, "..", "target", "release", "kora")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def start(args):
    port = free_port()
    proc = subprocess.Popen([KORA, "--output", "json", *args(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    json.loads(proc.stdout.readline())
    return proc, f"127.0.0.1:{port}"


def bench(*args):
    out = subprocess.run([KORA, "--output", "json", "bench", *args], capture_output=True, check=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def drop_caches():
    """Drops the page cache (root only), so the next read comes from the disk."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return "page cache dropped"
    except OSError:
        return "page cache not dropped (needs root)"


def run_once(a):
    common = ["--messages", str(a.messages), "--message-bytes", str(a.message_bytes),
              "--partitions", str(a.partitions), "--acks", "all"]
    tmp = tempfile.mkdtemp()
    procs = []
    rows = {}
    try:
        sink, sink_addr = start(lambda p: ["bench", "sink", "--listen", f"127.0.0.1:{p}"])
        procs.append(sink)
        rows["sink"] = bench("produce", "--bootstrap", sink_addr, *common)

        def broker(name, extra):
            d = os.path.join(tmp, name)
            return start(lambda p: ["dev", "--data-dir", d, "--listen", f"127.0.0.1:{p}",
                                    "--admin-listen", "127.0.0.1:0", *extra])

        for name, extra in [("roll", []), ("flush10ms", ["--set", "log.flush.interval.ms=10"]),
                            ("flush1", ["--set", "log.flush.interval.messages=1"])]:
            proc, addr = broker(name, extra)
            procs.append(proc)
            before = cpu_seconds(proc.pid)
            rows[name] = bench("produce", "--bootstrap", addr, "--topic", "t", *common)
            rows[name]["cpu_s_per_gb"] = (cpu_seconds(proc.pid) - before) / (rows[name]["bytes"] / 1e9)
            if name == "roll":
                before = cpu_seconds(proc.pid)
                rows["consume_head"] = bench("consume", "--bootstrap", addr, "--topic", "t", "--consumers", "2")
                rows["consume_head"]["cpu_s_per_gb"] = (cpu_seconds(proc.pid) - before) / (rows["consume_head"]["bytes"] / 1e9)
                before = cpu_seconds(proc.pid)
                rows["batches_head"] = bench("consume", "--bootstrap", addr, "--topic", "t", "--consumers", "2",
                                             "--client", "batches")
                rows["batches_head"]["cpu_s_per_gb"] = (cpu_seconds(proc.pid) - before) / (rows["batches_head"]["bytes"] / 1e9)
                rows["latency20"] = bench("produce", "--bootstrap", addr, "--topic", "lat", "--rate-mb", "20",
                                          "--duration-s", "15", "--linger-ms", "1", "--message-bytes",
                                          str(a.message_bytes), "--partitions", str(a.partitions))
                # Cold read: restart, drop this file's pages from the cache where allowed, read again.
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
                cold = drop_caches()
                proc, addr = broker(name, [])
                procs.append(proc)
                rows["consume_disk"] = bench("consume", "--bootstrap", addr, "--topic", "t", "--consumers", "2")
                rows["consume_disk"]["note"] = cold
                drop_caches()
                rows["batches_disk"] = bench("consume", "--bootstrap", addr, "--topic", "t", "--consumers", "2",
                                             "--client", "batches")
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    return rows


def med(values):
    v = sorted(values)
    mid = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
    return mid if len(v) == 1 else (mid, v[0], v[-1])


def fmt(x, spec, suffix=""):
    if isinstance(x, tuple):
        return f"{x[0]:{spec}}{suffix} [{x[1]:{spec}}-{x[2]:{spec}}]"
    return f"{x:{spec}}{suffix}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--message-bytes", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    runs = [run_once(a) for _ in range(a.repeat)]
    m = lambda key, field: med([r[key][field] for r in runs])
    ratio = lambda key: med([100 * r[key]["mb_per_s"] / r["sink"]["mb_per_s"] for r in runs])
    vs_produce = lambda key: med([r[key]["mb_per_s"] / r["roll"]["mb_per_s"] for r in runs])
    print(f"{a.repeat} run(s); cells: median [lowest-highest]")
    print()
    print("| run | MB/s | vs sink (same run) | broker CPU s/GB |")
    print("| --- | --- | --- | --- |")
    print(f"| null sink (limit) | {fmt(m('sink', 'mb_per_s'), '.0f')} | 100% | |")
    for name, label in [("roll", "broker, fsync on segment roll"), ("flush10ms", "broker, flush.ms=10 (group commit)"),
                        ("flush1", "broker, flush.messages=1 (fsync before every ack)")]:
        print(f"| {label} | {fmt(m(name, 'mb_per_s'), '.0f')} | {fmt(ratio(name), '.0f', '%')} | {fmt(m(name, 'cpu_s_per_gb'), '.2f')} |")
    for key, label in [("consume_head", "consume (librdkafka), head (page cache)"),
                       ("consume_disk", "consume (librdkafka), after restart, page cache dropped"),
                       ("batches_head", "consume (batch reader), head (page cache)"),
                       ("batches_disk", "consume (batch reader), page cache dropped")]:
        cpu = fmt(m(key, "cpu_s_per_gb"), ".2f") if "cpu_s_per_gb" in runs[0][key] else ""
        print(f"| {label} | {fmt(m(key, 'mb_per_s'), '.0f')} | {fmt(vs_produce(key), '.2f', 'x produce')} | {cpu} |")
    lat = lambda q: med([r["latency20"]["latency"][q] for r in runs])
    print()
    print(f"Open loop at 20 MB/s: p50 {fmt(lat('p50_ms'), '.2f')} ms, p99 {fmt(lat('p99_ms'), '.2f')} ms, "
          f"p999 {fmt(lat('p999_ms'), '.2f')} ms, max {fmt(lat('max_ms'), '.2f')} ms")
    print()
    print("raw:", json.dumps(runs))


if __name__ == "__main__":
    main()
