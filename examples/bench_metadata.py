"""Metadata at scale (docs/benchmarks.md): create TOPICS x PARTITIONS partitions in a release
`kora dev` (or, with --cell, a 3-voter 3-broker cell from `kora cell up`), then measure a
broker's restart to serving (Metadata for every topic answered; in a cell, the restarted broker
registered again and leading its partitions).

    cargo build --release && python3 examples/bench_metadata.py [--topics 10000] [--partitions 10] [--cell]
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
KORA = os.path.join(HERE, "..", "target", "release", "kora")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data, port, admin):
    p = subprocess.Popen(
        [KORA, "dev", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
         "--output", "json"],
        stdout=subprocess.PIPE, stderr=open(data + ".log", "a"), text=True)
    json.loads(p.stdout.readline())
    return p


def serving(bootstrap, topics):
    a = AdminClient({"bootstrap.servers": bootstrap})
    md = a.list_topics(timeout=60)
    return sum(1 for t in md.topics if t.startswith("t-")) == topics


def rss_mb(pid):
    return int(open(f"/proc/{pid}/status").read().split("VmRSS:")[1].split()[0]) / 1024


def cell_status(bootstrap):
    out = subprocess.run([KORA, "cell", "status", "--bootstrap", bootstrap, "--output", "json"],
                         capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout) if out.returncode == 0 else None


def run_cell(args):
    tmp = tempfile.mkdtemp(prefix="kora-meta-bench-cell-")
    d = os.path.join(tmp, "cell")
    up = subprocess.Popen([KORA, "cell", "up", "--brokers", "3", "--voters", "3", "--data-dir", d, "--output", "json",
                           "--leader-imbalance-check-interval-seconds", "0"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    info = json.loads(up.stdout.readline())
    bootstrap = info["bootstrap"]
    a = AdminClient({"bootstrap.servers": bootstrap})
    t0 = time.time()
    for i in range(0, args.topics, args.batch):
        new = [NewTopic(f"t-{j}", args.partitions, 1) for j in range(i, min(i + args.batch, args.topics))]
        for name, f in a.create_topics(new, request_timeout=600).items():
            f.result(600)
    create_s = time.time() - t0
    rss = max(rss_mb(b["pid"]) for b in info["brokers"])
    # Restart broker 1 (SIGTERM: controlled shutdown) and time it back to serving: registered,
    # leading what it led, Metadata for every topic.
    b1 = [b for b in info["brokers"] if b["id"] == 1][0]
    os.kill(b1["pid"], 15)
    while os.path.exists(f"/proc/{b1['pid']}") and open(f"/proc/{b1['pid']}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.05)
    t0 = time.time()
    p = subprocess.Popen([KORA, "broker", "--config", os.path.join(d, "broker-1.toml")], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(tmp, "broker-1-restart.log"), "w"))
    b1_addr = b1["address"]
    while True:
        try:
            if serving(b1_addr, args.topics):
                s = cell_status(b1_addr)
                if s and any(b["id"] == 1 for b in s["brokers"]):
                    break
        except Exception:
            pass
        time.sleep(0.2)
    restart_s = time.time() - t0
    open_fds = len(os.listdir(f"/proc/{p.pid}/fd"))
    t0 = time.time()
    p.terminate()
    p.wait(600)
    stop_s = time.time() - t0
    print(json.dumps({
        "mode": "cell (3 voters, 3 brokers)",
        "topics": args.topics,
        "partitions": args.topics * args.partitions,
        "create_s": round(create_s, 2),
        "topics_per_s": round(args.topics / create_s, 1),
        "max_broker_rss_mb_after_create": round(rss, 1),
        "broker_restart_to_serving_s": round(restart_s, 2),
        "restarted_broker_open_fds": open_fds,
        "broker_clean_stop_s": round(stop_s, 2),
    }, indent=2), flush=True)
    up.terminate()
    up.wait(600)
    shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--topics", type=int, default=10000)
    ap.add_argument("--partitions", type=int, default=10)
    ap.add_argument("--batch", type=int, default=200, help="topics per CreateTopics request")
    ap.add_argument("--cell", action="store_true", help="a 3-voter, 3-broker cell instead of kora dev")
    args = ap.parse_args()
    if args.cell:
        return run_cell(args)
    tmp = tempfile.mkdtemp(prefix="kora-meta-bench-")
    data = os.path.join(tmp, "data")
    port, admin = free_port(), free_port()
    p = start(data, port, admin)
    bootstrap = f"127.0.0.1:{port}"
    a = AdminClient({"bootstrap.servers": bootstrap})
    t0 = time.time()
    for i in range(0, args.topics, args.batch):
        new = [NewTopic(f"t-{j}", args.partitions, 1) for j in range(i, min(i + args.batch, args.topics))]
        for name, f in a.create_topics(new, request_timeout=600).items():
            f.result(600)
    create_s = time.time() - t0
    rss = int(open(f"/proc/{p.pid}/status").read().split("VmRSS:")[1].split()[0]) / 1024
    p.terminate()
    p.wait(60)
    t0 = time.time()
    p = start(data, port, admin)
    while not serving(bootstrap, args.topics):
        time.sleep(0.1)
    restart_s = time.time() - t0
    p.terminate()
    p.wait(60)
    print(json.dumps({
        "topics": args.topics,
        "partitions": args.topics * args.partitions,
        "create_s": round(create_s, 2),
        "topics_per_s": round(args.topics / create_s, 1),
        "rss_mb_after_create": round(rss, 1),
        "restart_to_serving_s": round(restart_s, 2),
    }, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
