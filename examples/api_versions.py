"""Prints docs/compatibility.md's ApiKey table: the versions Kora and Apache Kafka each
advertise, as Kafka's own kafka-broker-api-versions tool reads them from a running broker.

    ./scripts/setup-java-deps.sh && cargo build -p kora
    python3 examples/api_versions.py [--kora target/debug/kora]

Starts `kora dev` and Apache Kafka (examples/apache_kafka.py) on 127.0.0.1, asks each, stops
both.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apache_kafka import ApacheKafka, classpath, free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"^\s*(\w+)\((\d+)\): (.*?),?$")


def advertised(bootstrap):
    out = subprocess.run(["java", "-cp", classpath(), "org.apache.kafka.tools.BrokerApiVersionsCommand",
                          "--bootstrap-server", bootstrap], capture_output=True, text=True, check=True).stdout
    versions = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            name, key, text = m.group(1), int(m.group(2)), m.group(3)
            text = re.sub(r"\s*\[usable: [^\]]*\]", "", text).strip()
            versions[key] = (name, "" if text == "UNSUPPORTED" else text.replace(" to ", "-"))
    return versions


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kora", default=os.path.join(ROOT, "target", "debug", "kora"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        kora = subprocess.Popen([a.kora, "--output", "json", "dev", "--data-dir", os.path.join(tmp, "d"), "--listen",
                                 f"127.0.0.1:{port}", "--admin-listen", "127.0.0.1:0"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            json.loads(kora.stdout.readline())
            ours = advertised(f"127.0.0.1:{port}")
        finally:
            kora.terminate()
            kora.wait(30)
    with ApacheKafka(nodes=1) as k:
        theirs = advertised(k.bootstrap)
    print("| ApiKey | Kafka 4.1.2 | Kora |")
    print("| --- | --- | --- |")
    for key in sorted(set(ours) | set(theirs)):
        name = (theirs.get(key) or ours.get(key))[0]
        t = theirs.get(key, (name, ""))[1] or "—"
        o = ours.get(key, (name, ""))[1] or "—"
        mark = "" if t == o else (" (not served)" if o == "—" else " (fewer)" if t != "—" else "")
        print(f"| {name} ({key}) | {t} | {o}{mark} |")


if __name__ == "__main__":
    main()
