#!/usr/bin/env python3
"""Produce throughput over PLAINTEXT, SASL_PLAINTEXT and SASL_SSL against one `kora dev --auth`,
with Apache Kafka's own kafka-producer-perf-test (the Java client, from the jars
scripts/setup-java-deps.sh resolves), interleaved rounds in one run; then the rate of SASL logins
(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) over raw sockets, with the broker's CPU time per login.

    python3 examples/bench_security.py [--records 2000000] [--size 512] [--rounds 2] [--logins 300]

Needs the openssl CLI (the certificates) and Java 17. Prints a markdown table (docs/benchmarks.md).
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from apache_kafka import classpath, free_port  # noqa: E402

KORA = os.environ.get("KORA_BIN", os.path.join(ROOT, "target", "release", "kora"))
PERF_TEST = "org.apache.kafka.tools.ProducerPerformance"


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_pki(d):
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc", "-keyout", ca_key,
            "-out", ca_crt, "-days", "2", "-subj", "/CN=bench-ca")
    key, csr, crt = (os.path.join(d, f"server.{x}") for x in ("key", "csr", "crt"))
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc", "-keyout", key,
            "-out", csr, "-subj", "/CN=localhost")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
            "-days", "2", "-extfile", ext)
    keystore = os.path.join(d, "keystore.pem")
    with open(keystore, "w") as f:
        f.write(open(key).read() + open(crt).read())
    return ca_crt, keystore


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def perf(props_file, topic, a):
    cmd = ["java", "-Xmx1g", "-cp", classpath(), PERF_TEST, "--topic", topic, "--num-records", str(a.records),
           "--record-size", str(a.size), "--throughput", "-1", "--producer.config", props_file,
           "--producer-props", "acks=1", "linger.ms=5", "batch.size=262144"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    last = [l for l in out.stdout.splitlines() if "records sent" in l]
    m = last and re.search(r"([\d.]+) records/sec \(([\d.]+) MB/sec\)", last[-1])
    if not m:
        raise RuntimeError(f"perf test failed: {out.stdout[-500:]} {out.stderr[-1500:]}")
    return float(m.group(1)), float(m.group(2))


class Conn:
    """A Kafka connection speaking just enough for SaslHandshake v1 and SaslAuthenticate v2."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.corr = 0

    def request(self, api, version, body, flexible):
        self.corr += 1
        header = struct.pack(">hhih", api, version, self.corr, 5) + b"bench" + (b"\x00" if flexible else b"")
        frame = header + body
        self.s.sendall(struct.pack(">i", len(frame)) + frame)
        n = struct.unpack(">i", self.recv(4))[0]
        return self.recv(n)

    def recv(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    def handshake(self, mechanism):
        m = mechanism.encode()
        resp = self.request(17, 1, struct.pack(">h", len(m)) + m, False)
        assert struct.unpack(">h", resp[4:6])[0] == 0, "handshake refused"

    def authenticate(self, token):
        body = _uvarint(len(token) + 1) + token + b"\x00"
        resp = self.request(36, 2, body, True)
        # correlation id, tagged fields, error code
        code = struct.unpack(">h", resp[5:7])[0]
        if code != 0:
            raise PermissionError(f"SASL error {code}")
        rest = resp[7:]
        msg_len, rest = _read_uvarint(rest)
        rest = rest[max(msg_len - 1, 0):]
        tok_len, rest = _read_uvarint(rest)
        return rest[:tok_len - 1]

    def close(self):
        self.s.close()


def _uvarint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _read_uvarint(b):
    n, shift, i = 0, 0, 0
    while True:
        x = b[i]
        n |= (x & 0x7F) << shift
        i += 1
        if not x & 0x80:
            return n, b[i:]
        shift += 7


def login(port, mechanism, user, password):
    c = Conn(port)
    try:
        c.handshake(mechanism)
        if mechanism == "PLAIN":
            c.authenticate(b"\x00" + user.encode() + b"\x00" + password.encode())
            return
        algo = "sha256" if mechanism.endswith("256") else "sha512"
        nonce = secrets.token_hex(16)
        first_bare = f"n={user},r={nonce}"
        server_first = c.authenticate(("n,," + first_bare).encode()).decode()
        fields = dict(x.split("=", 1) for x in server_first.split(","))
        salted = hashlib.pbkdf2_hmac(algo, password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.new(salted, b"Client Key", algo).digest()
        stored = hashlib.new(algo, client_key).digest()
        final_bare = f"c=biws,r={fields['r']}"
        auth_message = f"{first_bare},{server_first},{final_bare}".encode()
        signature = hmac.new(stored, auth_message, algo).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        c.authenticate(f"{final_bare},p={base64.b64encode(proof).decode()}".encode())
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--logins", type=int, default=300)
    a = ap.parse_args()
    classpath()
    with tempfile.TemporaryDirectory() as d:
        ca, keystore = make_pki(d)
        ports = {p: free_port() for p in ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL")}
        listeners = ",".join(f"{p}://127.0.0.1:{port}" for p, port in ports.items())
        env = {**os.environ, "KORA_CONFIG_DIR": os.path.join(d, "config")}
        log = open(os.path.join(d, "kora.log"), "wb")
        proc = subprocess.Popen(
            [KORA, "--output", "json", "dev", "--auth", "--data-dir", os.path.join(d, "data"), "--admin-listen",
             "127.0.0.1:0", "--set", f"listeners={listeners}", "--set", f"ssl.keystore.location={keystore}"],
            stdout=subprocess.PIPE, stderr=log, env=env)
        info = json.loads(proc.stdout.readline())
        key = info["api_key"]
        try:
            props = {}
            jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
                    f'username="{key["key"]}" password="{key["secret"]}";')
            for p, port in ports.items():
                path = os.path.join(d, f"{p}.properties")
                lines = [f"bootstrap.servers=127.0.0.1:{port}", f"security.protocol={p}"]
                if p.startswith("SASL"):
                    lines += ["sasl.mechanism=PLAIN", f"sasl.jaas.config={jaas}"]
                if p.endswith("SSL"):
                    lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={ca}"]
                with open(path, "w") as f:
                    f.write("\n".join(lines) + "\n")
                props[p] = path
            results = {p: [] for p in ports}
            cpu = {p: [] for p in ports}
            for r in range(a.rounds):
                for p in ports:
                    before = cpu_seconds(proc.pid)
                    rec, mb = perf(props[p], f"bench-{p.lower().replace('_', '-')}-{r}", a)
                    # The broker's CPU seconds per GB received: its own cost, apart from the client's.
                    cpu[p].append((cpu_seconds(proc.pid) - before) / (a.records * a.size / 1e9))
                    results[p].append((rec, mb))
                    print(f"round {r + 1} {p}: {rec:,.0f} records/s, {mb:.1f} MB/s", file=sys.stderr)
            best = {p: max(v, key=lambda x: x[1]) for p, v in results.items()}
            base = best["PLAINTEXT"][1]
            print(f"\nProduce, {a.records:,} records of {a.size} B, acks=1, kafka-producer-perf-test 4.1.2, "
                  f"best of {a.rounds} interleaved rounds (client and broker share the machine):\n")
            print("| listener | records/s | MB/s | vs PLAINTEXT | broker CPU s per GB |")
            print("| --- | ---: | ---: | ---: | ---: |")
            for p, (rec, mb) in best.items():
                print(f"| {p} | {rec:,.0f} | {mb:.1f} | {mb / base:.0%} | {min(cpu[p]):.2f} |")
            # 10,000 ACLs in the tenant; a key limited by them against the tenant's admin key.
            import urllib.request
            token = open(info["token_file"]).read().strip()

            def call(path, body):
                req = urllib.request.Request(info["admin"] + path, data=json.dumps(body).encode(), method="POST",
                                             headers={"Authorization": f"Bearer {token}",
                                                      "Content-Type": "application/json"})
                return json.loads(urllib.request.urlopen(req, timeout=120).read())

            tenant = key["tenant"]
            member = call(f"/v1/tenants/{tenant}/api-keys", {"description": "bench", "admin": False})
            acls = [{"resource_type": "TOPIC", "resource_name": f"other-{i}",
                     "pattern_type": "PREFIXED" if i % 4 == 0 else "LITERAL",
                     "principal": f"User:someone-{i % 97}", "operation": "READ" if i % 2 else "WRITE",
                     "permission": "DENY" if i % 10 == 0 else "ALLOW"} for i in range(9_998)]
            acls += [{"resource_type": "TOPIC", "resource_name": "bench-", "pattern_type": "PREFIXED",
                      "principal": f"User:{member['key']}", "operation": op} for op in ("WRITE", "CREATE")]
            call(f"/v1/tenants/{tenant}/acls", acls)
            limited = os.path.join(d, "limited.properties")
            with open(props["SASL_PLAINTEXT"]) as f:
                text = f.read().replace(key["key"], member["key"]).replace(key["secret"], member["secret"])
            with open(limited, "w") as f:
                f.write(text)
            acl_rounds = {"admin key (no ACL check)": [], "key limited by 10,000 ACLs": []}
            for r in range(a.rounds):
                for label, path in (("admin key (no ACL check)", props["SASL_PLAINTEXT"]),
                                    ("key limited by 10,000 ACLs", limited)):
                    rec, mb = perf(path, f"bench-acl-{r}-{len(acl_rounds[label])}", a)
                    acl_rounds[label].append((rec, mb))
                    print(f"round {r + 1} {label}: {mb:.1f} MB/s", file=sys.stderr)
            best_acl = {k: max(v, key=lambda x: x[1]) for k, v in acl_rounds.items()}
            first = best_acl["admin key (no ACL check)"][1]
            print("\nSASL_PLAINTEXT produce, the tenant holding 10,000 ACLs:\n")
            print("| principal | records/s | MB/s | vs admin |")
            print("| --- | ---: | ---: | ---: |")
            for k, (rec, mb) in best_acl.items():
                print(f"| {k} | {rec:,.0f} | {mb:.1f} | {mb / first:.0%} |")
            print(f"\nSASL logins on SASL_PLAINTEXT, {a.logins} sequential connections each:\n")
            print("| mechanism | logins/s | broker CPU ms per login |")
            print("| --- | ---: | ---: |")
            for mech in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
                login(ports["SASL_PLAINTEXT"], mech, key["key"], key["secret"])  # warm
                cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                for _ in range(a.logins):
                    login(ports["SASL_PLAINTEXT"], mech, key["key"], key["secret"])
                dt, dcpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
                print(f"| {mech} | {a.logins / dt:,.0f} | {1000 * dcpu / a.logins:.2f} |")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
