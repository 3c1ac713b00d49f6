"""Reproduces the throughput/latency table of docs/benchmarks.md with `kora bench`.

Starts the null sink and Kora brokers (release build) on 127.0.0.1, runs the same generator
against each in one run, and prints a markdown table: produce MB/s (sink, fsync on roll,
flush.ms=10 group commit, flush.messages=1), the broker/sink ratios, consume from the head and
from disk, open-loop latency at 20 MB/s, and broker CPU seconds per produced GB.

    cargo build --release && python3 examples/bench_produce.py [--messages 1000000]
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--message-bytes", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=8)
    a = ap.parse_args()
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
                rows["consume_head"] = bench("consume", "--bootstrap", addr, "--topic", "t")
                rows["latency20"] = bench("produce", "--bootstrap", addr, "--topic", "lat", "--rate-mb", "20",
                                          "--duration-s", "15", "--linger-ms", "1", "--message-bytes",
                                          str(a.message_bytes), "--partitions", str(a.partitions))
                # Cold read: restart, drop this file's pages from the cache where allowed, read again.
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
                try:
                    with open("/proc/sys/vm/drop_caches", "w") as f:
                        f.write("1\n")
                    cold = "page cache dropped"
                except OSError:
                    cold = "page cache not dropped (needs root)"
                proc, addr = broker(name, [])
                procs.append(proc)
                rows["consume_disk"] = bench("consume", "--bootstrap", addr, "--topic", "t")
                rows["consume_disk"]["note"] = cold
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    sink_mb = rows["sink"]["mb_per_s"]
    print(f"| run | MB/s | msgs/s | vs sink | broker CPU s/GB |")
    print(f"| --- | --- | --- | --- | --- |")
    print(f"| null sink (limit) | {sink_mb:.0f} | {rows['sink']['msgs_per_s']:.0f} | 100% | |")
    for name, label in [("roll", "broker, fsync on segment roll"), ("flush10ms", "broker, flush.ms=10 (group commit)"),
                        ("flush1", "broker, flush.messages=1 (fsync before every ack)")]:
        r = rows[name]
        print(f"| {label} | {r['mb_per_s']:.0f} | {r['msgs_per_s']:.0f} | {100 * r['mb_per_s'] / sink_mb:.0f}% | {r['cpu_s_per_gb']:.2f} |")
    produce_mb = rows["roll"]["mb_per_s"]
    for key, label in [("consume_head", "consume, head (page cache)"), ("consume_disk", "consume, after restart")]:
        r = rows[key]
        print(f"| {label} | {r['mb_per_s']:.0f} | {r['msgs_per_s']:.0f} | {r['mb_per_s'] / produce_mb:.2f}x produce | {r.get('note', '')} |")
    l = rows["latency20"]["latency"]
    print()
    print(f"Open loop at 20 MB/s ({rows['latency20']['msgs_per_s']:.0f} msgs/s achieved): "
          f"p50 {l['p50_ms']:.2f} ms, p99 {l['p99_ms']:.2f} ms, p999 {l['p999_ms']:.2f} ms, max {l['max_ms']:.2f} ms")
    print()
    print("raw:", json.dumps(rows))


if __name__ == "__main__":
    main()
