"""Tenants in a 3-broker cell (`kora cell up --auth`): tenants, API keys, SCRAM users and ACLs
are metadata records of the cell's quorum, so every broker authenticates and authorizes
the same way, and they survive kill -9 of the metadata leader and a restart of the cell."""
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, NewTopic,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from conftest import KORA_BIN


class Cell:
    def __init__(self, root):
        self.root = root
        self.env = {**os.environ, "KORA_CONFIG_DIR": os.path.join(root, "config")}
        self.err = open(os.path.join(root, "cell-up.err"), "ab")
        self.proc = subprocess.Popen(
            [KORA_BIN, "--output", "json", "cell", "up", "--auth", "--brokers", "3", "--voters", "3",
             "--data-dir", os.path.join(root, "cell")],
            stdout=subprocess.PIPE, stderr=self.err, env=self.env, start_new_session=True)
        line = self.proc.stdout.readline()
        assert line, open(self.err.name).read()[-3000:]
        self.info = json.loads(line)
        self.admins = [b["admin"] for b in self.info["brokers"]]

    def cli(self, *args, admin=0):
        p = subprocess.run([KORA_BIN, "--output", "json", *args, "--admin", self.admins[admin]],
                           capture_output=True, text=True, env=self.env, timeout=60)
        assert p.returncode == 0, f"kora {' '.join(args)}: {p.stderr}"
        return json.loads(p.stdout)

    def leader_voter(self):
        for v in self.info["voters"]:
            p = subprocess.run([KORA_BIN, "--output", "json", "meta", "status", "--voter", v["address"]],
                               capture_output=True, text=True, env=self.env, timeout=30)
            if p.returncode == 0 and json.loads(p.stdout).get("leader"):
                return json.loads(p.stdout)["leader"]
        raise AssertionError("no metadata leader")

    def kill(self, kind, ident):
        pid = next(m["pid"] for m in self.info[kind] if m["id"] == ident)
        os.kill(pid, signal.SIGKILL)

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.err.close()


def conf(bootstrap, login, secret, mechanism="SCRAM-SHA-512"):
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": mechanism,
            "sasl.username": login, "sasl.password": secret}


def read_all(c, topic, group, n):
    consumer = Consumer({**c, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got, deadline = [], time.time() + 60
    while len(got) < n and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    if got:
        consumer.commit(asynchronous=False)
    consumer.close()
    return got


def replication_bytes_in(admin_url):
    """What a broker's /metrics says it appended as a follower."""
    with urllib.request.urlopen(f"{admin_url}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("kora_replication_bytes_in"):
                return float(line.split()[-1])
    raise AssertionError(f"{admin_url}/metrics has no kora_replication_bytes_in")


def test_tenants_keys_users_and_acls_survive_metadata_failover_and_restart():
    with tempfile.TemporaryDirectory() as root:
        cell = Cell(root)
        try:
            sasl = cell.info["sasl_bootstrap"]
            created = cell.cli("tenant", "create", "acme")
            key = created["api_key"]
            # Both listeners need a login: the inter-broker one (brokers log in to each other with
            # SCRAM-SHA-512 as a listener-local user) and the clients' one.
            assert [b["security_protocol"] for b in created["tenant"]["bootstrap"]] == ["SASL_PLAINTEXT"] * 2
            admin = AdminClient(conf(sasl, key["key"], key["secret"]))
            admin.create_topics([NewTopic("orders", 3, 3)])["orders"].result(60)
            info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
            admin.alter_user_scram_credentials([UserScramCredentialUpsertion("reader", info, b"reader-pw")])["reader"].result(60)
            grants = [AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:reader", "*",
                                 AclOperation.READ, AclPermissionType.ALLOW),
                      AclBinding(ResourceType.GROUP, "readers", ResourcePatternType.LITERAL, "User:reader", "*",
                                 AclOperation.READ, AclPermissionType.ALLOW)]
            for f in admin.create_acls(grants).values():
                f.result(60)
            p = Producer({**conf(sasl, key["key"], key["secret"]), "acks": "all"})
            # Each partition explicitly: the sticky partitioner would put all 100 in one batch on
            # one partition, whose leader then appends nothing as a follower.
            for i in range(100):
                p.produce("orders", f"m{i}".encode(), partition=i % 3)
            assert p.flush(60) == 0
            # The followers replicate over the authenticated inter-broker listener: every broker
            # follows two of the three partitions and has appended their records as a follower.
            deadline = time.time() + 60
            while True:
                appended = [replication_bytes_in(b["admin"]) for b in cell.info["brokers"]]
                if all(n > 0 for n in appended):
                    break
                assert time.time() < deadline, f"bytes appended as a follower, per broker: {appended}"
                time.sleep(0.5)
            reader = conf(sasl, f"{key['tenant']}~reader", "reader-pw", "SCRAM-SHA-256")
            assert len(read_all(reader, "orders", "readers", 100)) == 100

            # The metadata leader dies: the other voters elect a new one, and every broker still
            # knows every credential and ACL (reads) and takes new ones (writes through the new
            # leader). Broker failover itself is cell.rs's subject.
            cell.kill("voters", cell.leader_voter())
            survivors = sasl
            assert cell.cli("tenant", "describe", "acme", admin=1)["api_keys"] == 1
            moved = {**reader, "bootstrap.servers": survivors}
            assert read_all(moved, "orders", "readers-2", 1) == [], "no ACL for group readers-2"
            # A new key made after the failover works on the surviving brokers.
            second = cell.cli("apikey", "create", "--tenant", "acme", admin=2)
            produced = Producer({**conf(survivors, second["key"], second["secret"]), "acks": "all"})
            produced.produce("orders", b"after-failover")
            assert produced.flush(120) == 0
        finally:
            cell.stop()

        # The whole cell again, from its data: the same keys, users and ACLs.
        cell = Cell(root)
        try:
            sasl = cell.info["sasl_bootstrap"]
            assert [t["name"] for t in cell.cli("tenant", "list")] == ["acme"]
            fresh = AdminClient(conf(sasl, second["key"], second["secret"]))
            assert "orders" in fresh.list_topics(timeout=30).topics
            acls = fresh.describe_acls(__import__("confluent_kafka").admin.AclBindingFilter(
                ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                AclPermissionType.ANY)).result(60)
            assert len(acls) == 2
            reader = conf(sasl, f"{key['tenant']}~reader", "reader-pw", "SCRAM-SHA-256")
            assert read_all(reader, "orders", "readers-3", 1) == [], "readers-3 has no ACL"
            assert read_all(reader, "orders", "readers", 1), "the reader's ACLs survived"
            # Every acknowledged record, the one written during the failover included.
            # Every acknowledged record (a consumer may see some twice: see the closing note).
            expected = {f"m{i}".encode() for i in range(100)} | {b"after-failover"}
            consumer = Consumer({**conf(sasl, second["key"], second["secret"]), "group.id": "verify",
                                 "auto.offset.reset": "earliest"})
            consumer.subscribe(["orders"])
            seen, deadline = set(), time.time() + 90
            while not expected <= seen and time.time() < deadline:
                m = consumer.poll(0.5)
                if m is not None and not m.error():
                    seen.add(m.value())
            consumer.close()
            assert seen == expected, sorted(expected - seen)
        finally:
            cell.stop()
