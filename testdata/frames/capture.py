"""Records real clients' request frames as golden test data.

Runs a proxy on 127.0.0.1 between Kafka clients and a running Kora broker and saves every
request frame (without its size prefix) as <client>-<api_key>-v<version>-<n>.bin. The broker's
golden-frame test decodes each file; the fuzz target uses them as its seed corpus.

    python3 testdata/frames/capture.py [--kora target/debug/kora]

It starts its own `kora dev` whose advertised listener is the proxy, so every connection the
clients make (bootstrap, produce, fetch, admin) passes through it.
"""
import argparse
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import json
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def pump(src, dst, on_frame):
    buf = b""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            if on_frame:
                buf += data
                while len(buf) >= 4:
                    (n,) = struct.unpack(">i", buf[:4])
                    if len(buf) < 4 + n:
                        break
                    on_frame(buf[4:4 + n])
                    buf = buf[4 + n:]
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Proxy:
    def __init__(self, broker):
        self.broker = broker
        self.client = "unknown"
        self.seen = {}
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def save(self, frame):
        key, ver = struct.unpack(">hh", frame[:4])
        with self.lock:
            k = (self.client, key, ver)
            n = self.seen.get(k, 0)
            if n >= 2:
                return
            self.seen[k] = n + 1
        with open(os.path.join(HERE, f"{self.client}-{key:02d}-v{ver}-{n}.bin"), "wb") as f:
            f.write(frame)

    def accept(self):
        while True:
            c, _ = self.sock.accept()
            host, port = self.broker.rsplit(":", 1)
            b = socket.create_connection((host, int(port)))
            threading.Thread(target=pump, args=(c, b, self.save), daemon=True).start()
            threading.Thread(target=pump, args=(b, c, None), daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kora", default=os.path.join(HERE, "..", "..", "target", "debug", "kora"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        kora_port = s.getsockname()[1]
    p = Proxy(f"127.0.0.1:{kora_port}")
    kora = subprocess.Popen([args.kora, "--output", "json", "dev", "--data-dir", tmp, "--listen",
                             f"127.0.0.1:{kora_port}", "--admin-listen", "127.0.0.1:0",
                             "--set", f"advertised.listeners={p.addr}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    json.loads(kora.stdout.readline())
    try:
        capture(p)
    finally:
        kora.terminate()
        kora.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("frames:", len([f for f in os.listdir(HERE) if f.endswith(".bin")]))


def capture(p):
    if shutil.which("kcat"):
        p.client = "kcat"
        subprocess.run(["kcat", "-b", p.addr, "-L"], capture_output=True, timeout=30)
        subprocess.run(["kcat", "-b", p.addr, "-P", "-t", "golden-kcat", "-K:", "-z", "gzip"],
                       input=b"a:1\nb:2\n", capture_output=True, timeout=30)
        subprocess.run(["kcat", "-b", p.addr, "-C", "-t", "golden-kcat", "-e", "-o", "beginning"],
                       capture_output=True, timeout=30)
    p.client = "kafkapython"
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
    a = KafkaAdminClient(bootstrap_servers=p.addr)
    a.create_topics([NewTopic("golden-py", num_partitions=2, replication_factor=1)])
    a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "golden-py")])
    pr = KafkaProducer(bootstrap_servers=p.addr, acks="all")
    pr.send("golden-py", key=b"k", value=b"v", partition=0, headers=[("h", b"1")]).get(timeout=30)
    pr.close()
    c = KafkaConsumer(bootstrap_servers=p.addr, consumer_timeout_ms=2000)
    c.assign([TopicPartition("golden-py", 0)])
    c.seek_to_beginning()
    for _ in c:
        break
    c.close()
    a.delete_topics(["golden-py"])
    a.close()
    p.client = "confluent"
    from confluent_kafka import Consumer, Producer, TopicPartition as TP
    from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic as CNewTopic
    ca = AdminClient({"bootstrap.servers": p.addr})
    ca.create_topics([CNewTopic("golden-cf", num_partitions=1, replication_factor=1)])["golden-cf"].result(30)
    ca.create_partitions([NewPartitions("golden-cf", 2)])["golden-cf"].result(30)
    ca.describe_cluster().result(30)
    prod = Producer({"bootstrap.servers": p.addr, "enable.idempotence": True, "compression.type": "zstd"})
    prod.produce("golden-cf", key=b"k", value=b"v" * 100, partition=0)
    prod.flush(30)
    cons = Consumer({"bootstrap.servers": p.addr, "group.id": "x", "enable.auto.commit": False})
    cons.assign([TP("golden-cf", 0, 0)])
    cons.poll(5)
    cons.close()


if __name__ == "__main__":
    main()
