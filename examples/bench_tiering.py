"""Tiered-storage benchmark: produce with tiering on and off, local disk at steady state, and a
catch-up read from the object store against a hot read from local disk, in one run.

Starts s3s-fs (an S3-compatible server; scripts/setup-test-deps.sh installs it) and a release
`kora dev` whose object store is that server, then uses `kora bench`:

    cargo build --release && python3 examples/bench_tiering.py [--mb 1024] [--repeat 3] \
        [--store s3|file] [--copy-limit-mb 0]

--store file uses kora dev's local-directory store instead of s3s-fs; --copy-limit-mb sets
remote.log.manager.copy.max.bytes.per.second (uploads yield to producers on a small machine).

Topics (8 partitions, 1 KiB records, segment.bytes 8 MiB): `local-N` without remote storage,
`tiered-N` with remote.storage.enable=true and local.retention.bytes=1 (everything but the
active segment leaves local disk once uploaded).
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
KORA = os.path.join(HERE, "..", "target", "release", "kora")
SEGMENT = 8 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def bench(*args):
    out = subprocess.run([KORA, "--output", "json", "bench", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--store", choices=["s3", "file"], default="s3")
    ap.add_argument("--copy-limit-mb", type=int, default=0)
    a = ap.parse_args()
    messages = a.mb * 1024
    tmp = tempfile.mkdtemp(prefix="kora-tier-bench-")
    s3_root = os.path.join(tmp, "s3")
    os.makedirs(os.path.join(s3_root, "bench"))
    s3_port = free_port()
    s3 = subprocess.Popen(["s3s-fs", "--host", "127.0.0.1", "--port", str(s3_port), "--access-key", "k",
                           "--secret-key", "s", s3_root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(s3_port)
    env = dict(os.environ, AWS_ENDPOINT=f"http://127.0.0.1:{s3_port}", AWS_ALLOW_HTTP="true",
               AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_REGION="us-east-1")
    port, admin = free_port(), free_port()
    data = os.path.join(tmp, "data")
    store = ["--object-store", "s3://bench/tier"] if a.store == "s3" else []
    limit = ["--set", f"remote.log.manager.copy.max.bytes.per.second={a.copy_limit_mb << 20}"]
    kora = subprocess.Popen([KORA, "--output", "json", "dev", "--data-dir", data, "--listen", f"127.0.0.1:{port}",
                             "--admin-listen", f"127.0.0.1:{admin}", *store, *limit,
                             "--set", "remote.log.manager.task.interval.ms=500"],
                            stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "kora.log"), "w"), env=env)
    kora.stdout.readline()
    bs = f"127.0.0.1:{port}"
    rows = []
    try:
        from confluent_kafka.admin import AdminClient, NewTopic
        adm = AdminClient({"bootstrap.servers": bs})
        for r in range(a.repeat):
            local_t, tiered_t = f"local-{r}", f"tiered-{r}"
            fs = adm.create_topics([
                NewTopic(local_t, 8, 1, config={"segment.bytes": str(SEGMENT)}),
                NewTopic(tiered_t, 8, 1, config={"segment.bytes": str(SEGMENT), "remote.storage.enable": "true",
                                                 "local.retention.bytes": "1"}),
            ])
            for f in fs.values():
                f.result()
            row = {}
            row["produce_off"] = bench("produce", "--bootstrap", bs, "--topic", local_t, "--messages", str(messages))
            row["produce_on"] = bench("produce", "--bootstrap", bs, "--topic", tiered_t, "--messages", str(messages))
            # Steady state: every closed segment uploaded (no upload lag), local disk trimmed.
            t0 = time.time()
            while True:
                m = get(f"http://127.0.0.1:{admin}/metrics")
                lags = [l for l in m.splitlines() if l.startswith("kora_remote_upload_lag_bytes{") and tiered_t in l]
                desc = json.loads(get(f"http://127.0.0.1:{admin}/v1/topics/{tiered_t}"))
                local = sum(p["local_bytes"] for p in desc["partitions"])
                if len(lags) == 8 and all(l.endswith(" 0") for l in lags) and local <= 1 + 8 * SEGMENT:
                    break
                if time.time() - t0 > 900:
                    raise RuntimeError("uploads did not catch up in 15 minutes")
                time.sleep(0.5)
            row["catch_up_upload_s"] = time.time() - t0
            row["local_bytes"] = sum(p["local_bytes"] for p in desc["partitions"])
            row["remote_bytes"] = sum(p["remote_bytes"] for p in desc["partitions"])
            row["local_bound"] = 1 + 8 * SEGMENT
            row["consume_hot"] = bench("consume", "--bootstrap", bs, "--topic", local_t, "--consumers", "2")
            row["consume_remote"] = bench("consume", "--bootstrap", bs, "--topic", tiered_t, "--consumers", "2")
            rows.append(row)
    finally:
        kora.terminate()
        kora.wait(timeout=30)
        s3.terminate()
        s3.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)

    def med(xs):
        xs = sorted(xs)
        mid = len(xs) // 2
        return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2

    def cell(key, f):
        vals = [f(r) for r in rows]
        return f"{med(vals):.2f}" + (f" [{min(vals):.2f}-{max(vals):.2f}]" if len(vals) > 1 else "")

    print(f"{len(rows)} run(s), {a.mb} MB per topic, store {a.store}, copy limit {a.copy_limit_mb} MB/s (0: none); "
          "cells: median [lowest-highest]\n")
    print("| figure | value | target |\n| --- | --- | --- |")
    print(f"| produce, tiering off (MB/s) | {cell('x', lambda r: r['produce_off']['mb_per_s'])} | |")
    print(f"| produce, tiering on (MB/s) | {cell('x', lambda r: r['produce_on']['mb_per_s'])} | |")
    print(f"| tiering on / off | {cell('x', lambda r: r['produce_on']['mb_per_s'] / r['produce_off']['mb_per_s'])} | >= 0.90 |")
    print(f"| local disk at steady state (MB) | {cell('x', lambda r: r['local_bytes'] / 1e6)} | <= {rows[0]['local_bound'] / 1e6:.1f} (local.retention.bytes + 1 segment x 8 partitions) |")
    print(f"| in the object store (MB) | {cell('x', lambda r: r['remote_bytes'] / 1e6)} | |")
    print(f"| uploads done after produce ended (s) | {cell('x', lambda r: r['catch_up_upload_s'])} | |")
    print(f"| consume, hot from local disk (MB/s) | {cell('x', lambda r: r['consume_hot']['mb_per_s'])} | |")
    print(f"| consume, catch-up from the object store (MB/s) | {cell('x', lambda r: r['consume_remote']['mb_per_s'])} | |")
    print(f"| catch-up / hot | {cell('x', lambda r: r['consume_remote']['mb_per_s'] / r['consume_hot']['mb_per_s'])} | >= 0.50 |")
    print("\nraw:", json.dumps(rows))


if __name__ == "__main__":
    main()
