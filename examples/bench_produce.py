"""Reproduces the throughput/latency table of docs/benchmarks.md with `kora bench`.

Starts the null sink and Kora brokers (release build) on 127.0.0.1, runs the same generator
against each in one run, and prints a markdown table: produce MB/s (sink, fsync on roll,
flush.ms=10 group commit, flush.messages=1), the broker/sink ratios, consume from the head and
from disk (with librdkafka, and with the batch reader, `kora bench consume --client batches`), open-loop latency at 20 MB/s, and broker CPU seconds per produced GB.

    cargo build --release && python3 examples/bench_produce.py [--messages 1000000] [--repeat 3]

With --repeat N the whole sequence runs N times and each cell shows the median and, in
brackets, the lowest and highest run: on a small shared machine single runs vary a lot.

Side by side against another build (e.g. the previous commit's, built in a second work tree):

    python3 examples/bench_produce.py --repeat 3 --baseline /work/baseline/target/release/kora

Each repeat then runs the whole sequence once per binary, the order alternating between
repeats (new, baseline; baseline, new; ...) so drift on a noisy machine favours neither side.
Each side's own binary runs the null sink and the brokers (`kora dev`), each with a fresh data
dir and port; the load generator (`kora bench produce/consume`) is the --kora binary's for both
sides, so only the server under test differs. The script prints each side's table, then one
row per figure: both medians and new/baseline. --json FILE writes every raw figure.
"""
import argparse
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KORA = os.path.join(HERE, "..", "target", "release", "kora")
TICK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 60  # a broker or sink must print its address line within this
STOP_TIMEOUT_S = 60  # a SIGTERM'd broker must exit within this


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def first_line(proc, timeout):
    """The first line `proc` writes to stdout, waiting at most `timeout` seconds."""
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise TimeoutError(f"{proc.args[:4]} printed no address line within {timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"{proc.args[:4]} exited (status {proc.wait(5)}) before printing its address")
            buf += chunk
    return buf.split(b"\n", 1)[0]


class Side:
    """One binary under test: `server` runs the sink and brokers, `client` runs `kora bench`."""

    def __init__(self, name, server, client, timeout):
        self.name, self.server, self.client, self.timeout = name, server, client, timeout

    def start(self, args, procs):
        port = free_port()
        proc = subprocess.Popen([self.server, "--output", "json", *args(port)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        procs.append(proc)  # before waiting for it, so the caller's finally kills it on any error
        json.loads(first_line(proc, START_TIMEOUT_S))
        return proc, f"127.0.0.1:{port}"

    def bench(self, *args):
        cmd = [self.client, "--output", "json", "bench", *args]
        try:
            out = subprocess.run(cmd, capture_output=True, check=True, text=True, timeout=self.timeout).stdout
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"{' '.join(cmd)} failed (status {e.returncode}): {e.stderr.strip()[-2000:]}") from e
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"{' '.join(cmd)} took longer than {self.timeout} s (--timeout)") from e
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


def run_once(a, side):
    common = ["--messages", str(a.messages), "--message-bytes", str(a.message_bytes),
              "--partitions", str(a.partitions), "--acks", "all"]
    tmp = tempfile.mkdtemp(prefix=f"bench-produce-{side.name}-")
    procs = []
    rows = {}
    start, bench = side.start, side.bench
    try:
        sink, sink_addr = start(lambda p: ["bench", "sink", "--listen", f"127.0.0.1:{p}"], procs)
        rows["sink"] = bench("produce", "--bootstrap", sink_addr, *common)

        def broker(name, extra):
            d = os.path.join(tmp, name)
            return start(lambda p: ["dev", "--data-dir", d, "--listen", f"127.0.0.1:{p}",
                                    "--admin-listen", "127.0.0.1:0", *extra], procs)

        for name, extra in [("roll", []), ("flush10ms", ["--set", "log.flush.interval.ms=10"]),
                            ("flush1", ["--set", "log.flush.interval.messages=1"])]:
            proc, addr = broker(name, extra)
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
                proc.wait(STOP_TIMEOUT_S)
                cold = drop_caches()
                proc, addr = broker(name, [])
                rows["consume_disk"] = bench("consume", "--bootstrap", addr, "--topic", "t", "--consumers", "2")
                rows["consume_disk"]["note"] = cold
                drop_caches()
                rows["batches_disk"] = bench("consume", "--bootstrap", addr, "--topic", "t", "--consumers", "2",
                                             "--client", "batches")
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
            p.stdout.close()
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


PRODUCE_ROWS = [("roll", "broker, fsync on segment roll"), ("flush10ms", "broker, flush.ms=10 (group commit)"),
                ("flush1", "broker, flush.messages=1 (fsync before every ack)")]
CONSUME_ROWS = [("consume_head", "consume (librdkafka), head (page cache)"),
                ("consume_disk", "consume (librdkafka), after restart, page cache dropped"),
                ("batches_head", "consume (batch reader), head (page cache)"),
                ("batches_disk", "consume (batch reader), page cache dropped")]
LATENCY = [("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p999"), ("max_ms", "max")]


def print_table(runs):
    m = lambda key, field: med([r[key][field] for r in runs])
    ratio = lambda key: med([100 * r[key]["mb_per_s"] / r["sink"]["mb_per_s"] for r in runs])
    vs_produce = lambda key: med([r[key]["mb_per_s"] / r["roll"]["mb_per_s"] for r in runs])
    print(f"{len(runs)} run(s); cells: median [lowest-highest]")
    print()
    print("| run | MB/s | vs sink (same run) | broker CPU s/GB |")
    print("| --- | --- | --- | --- |")
    print(f"| null sink (limit) | {fmt(m('sink', 'mb_per_s'), '.0f')} | 100% | |")
    for name, label in PRODUCE_ROWS:
        print(f"| {label} | {fmt(m(name, 'mb_per_s'), '.0f')} | {fmt(ratio(name), '.0f', '%')} | {fmt(m(name, 'cpu_s_per_gb'), '.2f')} |")
    for key, label in CONSUME_ROWS:
        cpu = fmt(m(key, "cpu_s_per_gb"), ".2f") if "cpu_s_per_gb" in runs[0][key] else ""
        print(f"| {label} | {fmt(m(key, 'mb_per_s'), '.0f')} | {fmt(vs_produce(key), '.2f', 'x produce')} | {cpu} |")
    lat = lambda q: med([r["latency20"]["latency"][q] for r in runs])
    print()
    print(f"Open loop at 20 MB/s: p50 {fmt(lat('p50_ms'), '.2f')} ms, p99 {fmt(lat('p99_ms'), '.2f')} ms, "
          f"p999 {fmt(lat('p999_ms'), '.2f')} ms, max {fmt(lat('max_ms'), '.2f')} ms")


def figures():
    """(label, value of one run, format, which way is better) for every compared figure."""
    out = [("null sink (limit), MB/s", lambda r: r["sink"]["mb_per_s"], ".0f", "higher")]
    for key, label in PRODUCE_ROWS:
        out += [(f"{label}, MB/s", lambda r, k=key: r[k]["mb_per_s"], ".0f", "higher"),
                (f"{label}, % of own sink", lambda r, k=key: 100 * r[k]["mb_per_s"] / r["sink"]["mb_per_s"], ".0f", "higher"),
                (f"{label}, CPU s/GB", lambda r, k=key: r[k]["cpu_s_per_gb"], ".2f", "lower")]
    for key, label in CONSUME_ROWS:
        out.append((f"{label}, MB/s", lambda r, k=key: r[k]["mb_per_s"], ".0f", "higher"))
        if key.endswith("_head"):
            out.append((f"{label}, CPU s/GB", lambda r, k=key: r[k]["cpu_s_per_gb"], ".2f", "lower"))
    for q, label in LATENCY:
        out.append((f"open loop 20 MB/s, {label} ms", lambda r, q=q: r["latency20"]["latency"][q], ".2f", "lower"))
    return out


def ratio_of(new, base):
    return new / base if base else None  # None: baseline figure is 0


def fmt_ratio(x):
    return "n/a" if x is None else fmt(x, ".2f")


def print_comparison(new_runs, base_runs):
    paired = len(new_runs) > 1
    print(f"{len(new_runs)} repeat(s) per side; cells: median [lowest-highest]; new/baseline is the ratio of the medians"
          + ("; paired is the median [lowest-highest] of each repeat's own new/baseline" if paired else ""))
    print()
    print("| figure | better | baseline | new | new/baseline |" + (" paired |" if paired else ""))
    print("| --- | --- | --- | --- | --- |" + (" --- |" if paired else ""))
    for label, get, spec, better in figures():
        nv, bv = [get(r) for r in new_runs], [get(r) for r in base_runs]
        nm, bm = med(nv), med(bv)
        r = ratio_of(nm[0] if isinstance(nm, tuple) else nm, bm[0] if isinstance(bm, tuple) else bm)
        row = f"| {label} | {better} | {fmt(bm, spec)} | {fmt(nm, spec)} | {fmt_ratio(r)} |"
        if paired:
            pr = [x for x in (ratio_of(n, b) for n, b in zip(nv, bv)) if x is not None]
            row += f" {fmt_ratio(med(pr) if pr else None)} |"
        print(row)


def binary(path):
    path = os.path.abspath(path)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise argparse.ArgumentTypeError(f"{path} is not an executable file (cargo build --release?)")
    return path


def main():
    ap = argparse.ArgumentParser(description="Reproduces docs/benchmarks.md's produce/consume table with `kora bench`; "
                                 "with --baseline, measures two kora binaries side by side in one run.")
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--message-bytes", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--kora", type=binary, default=None, metavar="PATH",
                    help="the kora binary under test (default: target/release/kora of this tree); its `kora bench` "
                         "is also the load generator for both sides")
    ap.add_argument("--baseline", type=binary, default=None, metavar="PATH",
                    help="a second kora binary (e.g. the previous commit's release build) to measure side by side: "
                         "it runs its own sink and brokers, driven by --kora's generator")
    ap.add_argument("--json", metavar="FILE", help="also write every raw figure (both sides) to FILE as JSON")
    ap.add_argument("--timeout", type=float, default=600, metavar="S",
                    help="seconds each `kora bench` command may take before the run is abandoned (default 600)")
    a = ap.parse_args()
    if a.repeat < 1:
        ap.error("--repeat must be at least 1")
    if a.kora is None:
        try:
            a.kora = binary(KORA)
        except argparse.ArgumentTypeError as e:
            ap.error(f"--kora: {e}")

    new = Side("new", a.kora, a.kora, a.timeout)
    sides = [new]
    if a.baseline:
        sides.append(Side("baseline", a.baseline, a.kora, a.timeout))
        print(f"side by side: new = {a.kora}, baseline = {a.baseline}")
        print(f"load generator for both sides: `kora bench produce/consume` of {a.kora}; each side's own binary "
              "runs its null sink (`kora bench sink`) and brokers (`kora dev`), each with a fresh data dir and port")
        print("order: " + "; ".join(f"repeat {i + 1}: {'new, baseline' if i % 2 == 0 else 'baseline, new'}"
                                    for i in range(a.repeat)))
        print(flush=True)

    runs = {s.name: [] for s in sides}
    order = []
    for i in range(a.repeat):
        this = sides if i % 2 == 0 else sides[::-1]
        order.append([s.name for s in this])
        for s in this:
            runs[s.name].append(run_once(a, s))

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": {"messages": a.messages, "message_bytes": a.message_bytes,
                                  "partitions": a.partitions, "repeat": a.repeat},
                       "generator": a.kora,
                       "binaries": {s.name: s.server for s in sides},
                       "order": order,
                       "runs": runs}, f, indent=1)
            f.write("\n")

    if not a.baseline:
        print_table(runs["new"])
        print()
        print("raw:", json.dumps(runs["new"]))
        return

    for s in sides:
        print(f"### {s.name}: {s.server}")
        print()
        print_table(runs[s.name])
        print()
    print("### new vs baseline")
    print()
    print_comparison(runs["new"], runs["baseline"])
    print()
    print("raw:", json.dumps({"order": order, "runs": runs}))


if __name__ == "__main__":
    main()
