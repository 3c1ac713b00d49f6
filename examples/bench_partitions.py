"""Start-up and memory figures for many partitions (docs/benchmarks.md).

Creates TOPICS x PARTITIONS partitions, writes KB_PER_PARTITION of data into each, then reports:
- broker RSS with every partition idle;
- time from process start to serving (Metadata and a fetch answered) after a clean stop;
- the same after kill -9 (unclean: the active segments are validated).

    cargo build --release && python3 examples/bench_partitions.py [--kora target/release/kora]
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

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start(kora, data, port):
    t0 = time.monotonic()
    proc = subprocess.Popen([kora, "--output", "json", "dev", "--data-dir", data, "--listen", f"127.0.0.1:{port}",
                             "--admin-listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=open(os.path.join(os.path.dirname(data.rstrip("/")), "kora-bench.log"), "ab"))
    json.loads(proc.stdout.readline())
    return proc, t0


def time_to_serving(bootstrap, t0, topic):
    """Seconds from process start until Metadata lists the topic and a fetch returns data."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    while True:
        m = c.poll(0.05)
        if m is not None and m.error() is None:
            break
    c.close()
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kora", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "kora"))
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=10)
    ap.add_argument("--kb-per-partition", type=int, default=256)
    args = ap.parse_args()
    data = tempfile.mkdtemp()
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    proc, _ = start(args.kora, data, port)
    total = args.topics * args.partitions
    try:
        a = AdminClient({"bootstrap.servers": bootstrap})
        t = time.monotonic()
        fs = a.create_topics([NewTopic(f"bench-{i}", args.partitions, 1) for i in range(args.topics)])
        for f in fs.values():
            f.result(60)
        create_s = time.monotonic() - t
        time.sleep(2)
        idle_empty = rss_mb(proc.pid)
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "none"})
        value = os.urandom(1024)
        for i in range(args.topics):
            for part in range(args.partitions):
                for _ in range(args.kb_per_partition):
                    while True:
                        try:
                            p.produce(f"bench-{i}", value=value, partition=part)
                            break
                        except BufferError:
                            p.poll(0.01)
        p.flush(300)
        time.sleep(3)
        idle_data = rss_mb(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        proc, t0 = start(args.kora, data, port)
        clean_s = time_to_serving(bootstrap, t0, "bench-0")
        proc.kill()
        proc.wait()
        proc, t0 = start(args.kora, data, port)
        unclean_s = time_to_serving(bootstrap, t0, "bench-0")
        print(json.dumps({
            "partitions": total,
            "data_mb": round(total * args.kb_per_partition / 1024, 1),
            "create_topics_s": round(create_s, 2),
            "rss_idle_empty_mb": round(idle_empty, 1),
            "rss_idle_with_data_mb": round(idle_data, 1),
            "start_to_serving_after_clean_stop_s": round(clean_s, 3),
            "start_to_serving_after_kill9_s": round(unclean_s, 3),
        }, indent=2))
    finally:
        proc.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
