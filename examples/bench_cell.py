"""Cell benchmarks (docs/benchmarks.md): leader failover and replicated produce throughput.

    cargo build --release && python3 examples/bench_cell.py [--runs 10] [--messages 300000]

Failover: a 3-voter, 3-broker cell on 127.0.0.1, one RF=3 partition (min.insync.replicas=2),
an idempotent acks=all producer sending every 5 ms. The partition's leader is killed (kill -9,
or SIGTERM for controlled shutdown); the figure is the time from the signal to the first
acknowledged write sent after it. The broker is restarted and the cell waits for a full ISR
and the preferred leader before the next run. Medians over --runs.

Throughput: `kora bench produce` (1 KiB, acks=all, 8 partitions) against `kora dev` and against
the cell with RF=3 and min.insync.replicas=2, in the same run on the same machine.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
KORA = os.path.join(HERE, "..", "target", "release", "kora")


def status(bootstrap):
    out = subprocess.run([KORA, "cell", "status", "--bootstrap", bootstrap, "--output", "json"],
                         capture_output=True, text=True, timeout=30)
    return json.loads(out.stdout) if out.returncode == 0 else None


def partition(s, topic, p):
    for x in s["partitions"]:
        if x["topic"] == topic and x["partition"] == p:
            return x
    return None


def wait_settled(bootstrap, topic, within=90):
    """Full ISR and the preferred leader on every partition of `topic`."""
    deadline = time.time() + within
    while time.time() < deadline:
        s = status(bootstrap)
        if s:
            ps = [x for x in s["partitions"] if x["topic"] == topic]
            if ps and all(x["leader"] == x["replicas"][0] and len(x["isr"]) == len(x["replicas"]) for x in ps):
                return s
        time.sleep(0.2)
    raise SystemExit(f"{topic} did not settle: {status(bootstrap)}")


class Cell:
    def __init__(self, root, extra):
        self.dir = os.path.join(root, "cell")
        self.proc = subprocess.Popen(
            [KORA, "cell", "up", "--brokers", "3", "--voters", "3", "--output", "json", "--data-dir", self.dir,
             "--leader-imbalance-check-interval-seconds", "1"] + extra,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.info = json.loads(self.proc.stdout.readline())
        self.bootstrap = self.info["bootstrap"]
        self.pids = {b["id"]: b["pid"] for b in self.info["brokers"]}
        self.restarted = []

    def kill(self, broker, sig):
        os.kill(self.pids[broker], sig)

    def wait_exit(self, broker):
        pid = self.pids[broker]
        while True:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return
            except FileNotFoundError:
                return
            time.sleep(0.02)

    def restart(self, broker):
        cfg = os.path.join(self.dir, f"broker-{broker}.toml")
        p = subprocess.Popen([KORA, "broker", "--config", cfg], stdout=subprocess.DEVNULL,
                             stderr=open(cfg + ".restart.log", "a"))
        self.pids[broker] = p.pid
        self.restarted.append(p)

    def stop(self):
        for p in self.restarted:
            p.send_signal(signal.SIGTERM)
        self.proc.send_signal(signal.SIGTERM)
        for p in self.restarted + [self.proc]:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def failover_runs(root, runs, sig, idempotence=True):
    cell = Cell(root, [])
    try:
        admin = AdminClient({"bootstrap.servers": cell.bootstrap})
        t = NewTopic("failover", 1, 3, config={"min.insync.replicas": "2"})
        for _ in range(100):
            if not admin.create_topics([t])["failover"].exception():
                break
            time.sleep(0.2)
        figures = []
        for run in range(runs):
            s = wait_settled(cell.bootstrap, "failover")
            leader = partition(s, "failover", 0)["leader"]
            acked = []
            lock = threading.Lock()

            def report(err, msg):
                if err is None:
                    with lock:
                        acked.append((time.time(), float(msg.value())))

            p = Producer({"bootstrap.servers": cell.bootstrap, "enable.idempotence": idempotence, "acks": "all",
                          "linger.ms": 0, "message.timeout.ms": 60000})
            stop = time.time() + 30
            killed = None
            first = None
            while time.time() < stop and first is None:
                now = time.time()
                p.produce("failover", value=repr(now).encode(), partition=0, on_delivery=report)
                p.poll(0.005)
                if killed is None and now - (stop - 30) > 1.0:
                    killed = time.time()
                    cell.kill(leader, sig)
                if killed is not None:
                    with lock:
                        after = [a for a, sent in acked if sent >= killed]
                    if after:
                        first = min(after) - killed
            # Keep producing a little longer, then find the longest silence between two
            # acknowledgements around the failover (what a client waits at worst).
            until = time.time() + 1.0
            while time.time() < until:
                p.produce("failover", value=repr(time.time()).encode(), partition=0, on_delivery=report)
                p.poll(0.005)
            p.flush(30)
            if first is None:
                raise SystemExit(f"run {run}: no acknowledged write within 30 s of killing broker {leader}")
            with lock:
                times = sorted(a for a, _ in acked)
            gap = max((b - a for a, b in zip(times, times[1:]) if b >= killed), default=0.0)
            figures.append((first, gap))
            print(f"  run {run + 1}: broker {leader} {'kill -9' if sig == signal.SIGKILL else 'SIGTERM'}, "
                  f"first acknowledged write sent after the signal: {first:.2f} s, "
                  f"longest gap between acknowledgements: {gap:.2f} s", flush=True)
            cell.wait_exit(leader)
            cell.restart(leader)
        return figures
    finally:
        cell.stop()


def bench(bootstrap, messages, topic):
    out = subprocess.run([KORA, "bench", "produce", "--bootstrap", bootstrap, "--topic", topic, "--messages",
                          str(messages), "--acks", "all", "--partitions", "8", "--output", "json"],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"kora bench failed: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(root, messages):
    data = os.path.join(root, "dev")
    dev = subprocess.Popen([KORA, "dev", "--data-dir", data, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                            "--output", "json"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    info = json.loads(dev.stdout.readline())
    try:
        single = bench(info["bootstrap"], messages, "single")
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=30)
    shutil.rmtree(data, ignore_errors=True)
    cell = Cell(root, ["--set", "default.replication.factor=3", "--set", "min.insync.replicas=2"])
    try:
        replicated = bench(cell.bootstrap, messages, "replicated")
        s = status(cell.bootstrap)
        isr = [len(x["isr"]) for x in s["partitions"] if x["topic"] == "replicated"]
    finally:
        cell.stop()
    return single, replicated, isr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--messages", type=int, default=300000)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-failover", action="store_true")
    ap.add_argument("--skip-kill", action="store_true", help="only the controlled-shutdown runs")
    ap.add_argument("--no-idempotence", action="store_true", help="failover with a plain acks=all producer")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="kora-bench-cell-")
    try:
        if not a.skip_failover:
            print("failover after kill -9 of the leader:")
            idem = not a.no_idempotence
            k = [] if a.skip_kill else failover_runs(os.path.join(root, "k9"), a.runs, signal.SIGKILL, idem)
            print("failover after controlled shutdown (SIGTERM) of the leader:")
            c = failover_runs(os.path.join(root, "term"), a.runs, signal.SIGTERM, idem)
            for name, f in (("kill -9", k), ("controlled shutdown", c)):
                if not f:
                    continue
                firsts = [x[0] for x in f]
                gaps = [x[1] for x in f]
                print(f"failover after {name}: median {statistics.median(firsts):.2f} s to the first acknowledged "
                      f"write (max {max(firsts):.2f}); longest ack gap median {statistics.median(gaps):.2f} s "
                      f"(max {max(gaps):.2f}); {a.runs} runs")
        if not a.skip_throughput:
            single, replicated, isr = throughput(root, a.messages)
            ratio = replicated["mb_per_s"] / single["mb_per_s"]
            print(f"produce 1 KiB acks=all 8 partitions: single node {single['mb_per_s']:.1f} MB/s "
                  f"(p99 {single['latency']['p99_ms']:.1f} ms), cell RF=3 {replicated['mb_per_s']:.1f} MB/s "
                  f"(p99 {replicated['latency']['p99_ms']:.1f} ms), ratio {ratio:.2f}; ISR sizes after {isr}")
    finally:
        if os.environ.get("KORA_BENCH_KEEP"):
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
