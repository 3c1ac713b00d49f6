"""Tenants on one `kora dev --auth`: SASL logins with real clients (confluent-kafka, kafka-python),
and two tenants that each see their own Kafka cluster."""
import time
import urllib.error

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import errors as kerrors

from conftest import Kora


@pytest.fixture(scope="module")
def kora():
    k = Kora(extra=["--auth"])
    yield k
    k.stop()


def sasl(kora, key, mechanism="PLAIN"):
    return {"bootstrap.servers": kora.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": mechanism, "sasl.username": key["key"], "sasl.password": key["secret"]}


def new_tenant(kora, name, *extra):
    created = kora.cli("tenant", "create", name, *extra)
    assert created["tenant"]["name"] == name and created["tenant"]["id"].startswith("lkc-")
    assert created["api_key"]["tenant"] == created["tenant"]["id"]
    return created["api_key"]


def produce(conf, topic, values):
    p = Producer(conf)
    for v in values:
        p.produce(topic, v)
    assert p.flush(30) == 0


def consume_all(conf, topic, group, n):
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.time() + 30
    while len(got) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.commit(asynchronous=False)
    c.close()
    return got


def test_dev_auth_prints_a_key_that_logs_in_with_every_mechanism(kora):
    key = kora.info["api_key"]
    assert kora.info["security_protocol"] == "SASL_PLAINTEXT"
    for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        conf = sasl(kora, key, mechanism)
        produce(conf, "dev-orders", [mechanism.encode()])
        md = AdminClient(conf).list_topics(timeout=10)
        # A tenant's cluster id is its logical cluster's id.
        assert md.cluster_id == key["tenant"]
        assert "dev-orders" in md.topics
    assert sorted(consume_all(sasl(kora, key), "dev-orders", "g", 3)) == [b"PLAIN", b"SCRAM-SHA-256", b"SCRAM-SHA-512"]
    # kafka-python speaks SCRAM on its own implementation.
    for mechanism in ("SCRAM-SHA-512", "PLAIN"):
        auth = dict(bootstrap_servers=kora.bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                    sasl_plain_username=key["key"], sasl_plain_password=key["secret"])
        producer = KafkaProducer(**auth)
        producer.send("dev-orders", b"py-" + mechanism.encode()).get(timeout=30)
        producer.close()
        consumer = KafkaConsumer("dev-orders", auto_offset_reset="earliest", consumer_timeout_ms=5000, **auth)
        assert b"py-" + mechanism.encode() in [m.value for m in consumer]
        consumer.close()


def test_wrong_secrets_and_clients_without_sasl_are_refused(kora, caplog):
    key = dict(kora.info["api_key"])
    for mechanism in ("PLAIN", "SCRAM-SHA-512"):
        bad = sasl(kora, {**key, "secret": "not-the-secret"}, mechanism)
        errors = []
        bad["error_cb"] = lambda e: errors.append(e)
        p = Producer(bad)
        deadline = time.time() + 10
        while not errors and time.time() < deadline:
            p.poll(0.2)
        # librdkafka reports _AUTHENTICATION with the broker's SASL_AUTHENTICATION_FAILED text.
        assert errors and errors[0].code() == -169, errors
        assert "invalid credentials" in errors[0].str(), errors[0].str()
    with pytest.raises(kerrors.KafkaError) as e:
        producer = KafkaProducer(bootstrap_servers=kora.bootstrap, security_protocol="SASL_PLAINTEXT",
                                 sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="NOSUCHKEY",
                                 sasl_plain_password="x", max_block_ms=5000)
        producer.send("dev-orders", b"x").get(timeout=10)
    # kafka-python retries the bootstrap until its timeout, logging the broker's answer.
    assert isinstance(e.value, (kerrors.SaslAuthenticationFailedError, kerrors.KafkaTimeoutError)), e.value
    assert "SaslAuthenticationFailedError" in caplog.text and "invalid credentials" in caplog.text
    # No SASL at all on a SASL listener: refused, and the broker carries on.
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": kora.bootstrap}).list_topics(timeout=3)
    assert AdminClient(sasl(kora, key)).list_topics(timeout=10).cluster_id == key["tenant"]


def test_two_tenants_with_the_same_names_are_isolated_both_ways(kora):
    a, b = new_tenant(kora, "alpha"), new_tenant(kora, "beta")
    ca, cb = sasl(kora, a, "SCRAM-SHA-256"), sasl(kora, b, "SCRAM-SHA-512")
    for conf in (ca, cb):
        admin = AdminClient(conf)
        admin.create_topics([NewTopic("orders", 2, 1, config={"retention.ms": "3600000"})])["orders"].result(30)
    produce(ca, "orders", [b"a1", b"a2", b"a3"])
    produce(cb, "orders", [b"b1"])
    assert sorted(consume_all(ca, "orders", "shared-group", 3)) == [b"a1", b"a2", b"a3"]
    assert consume_all(cb, "orders", "shared-group", 1) == [b"b1"]
    # Committed offsets of the same group id are each tenant's own.
    for conf, total in ((ca, 3), (cb, 1)):
        c = Consumer({**conf, "group.id": "shared-group"})
        committed = c.committed([TopicPartition("orders", p) for p in range(2)], timeout=10)
        assert sum(max(tp.offset, 0) for tp in committed) == total
        c.close()
    # Configs: altering one tenant's topic leaves the other's alone.
    admin_a = AdminClient(ca)
    res = admin_a.alter_configs([ConfigResource("topic", "orders", set_config={"retention.ms": "60000"})])
    list(res.values())[0].result(30)

    def desc(conf):
        admin = AdminClient(conf)
        return list(admin.describe_configs([ConfigResource("topic", "orders")]).values())[0].result(30)

    assert desc(ca)["retention.ms"].value == "60000"
    assert desc(cb)["retention.ms"].value == "3600000"
    # Metadata and group listings show each tenant only its own.
    for conf, mine, theirs in ((ca, a, b), (cb, b, a)):
        admin = AdminClient(conf)
        md = admin.list_topics(timeout=10)
        assert set(md.topics) == {"orders"}, md.topics
        assert md.cluster_id == mine["tenant"]
        groups = admin.list_consumer_groups().result(30)
        assert {g.group_id for g in groups.valid} == {"shared-group"}
        assert not any(theirs["tenant"] in t for t in md.topics)
    # The first tenant (dev) sees neither.
    md = AdminClient(sasl(kora, kora.info["api_key"])).list_topics(timeout=10)
    assert "orders" not in md.topics
    # Described through the operator CLI, each tenant has its topic.
    info = kora.cli("tenant", "describe", "alpha")
    assert info["topics"] == 1 and info["partitions"] == 2 and info["api_keys"] == 1


def test_limits_keys_and_tenant_deletion(kora):
    key = new_tenant(kora, "small", "--max-partitions", "3")
    conf = sasl(kora, key)
    admin = AdminClient(conf)
    admin.create_topics([NewTopic("fits", 3, 1)])["fits"].result(30)
    with pytest.raises(KafkaException) as e:
        admin.create_topics([NewTopic("over", 1, 1)])["over"].result(30)
    assert e.value.args[0].name() == "POLICY_VIOLATION", e.value
    # A second key, then the first deleted: its sessions end, new logins fail.
    second = kora.cli("apikey", "create", "--tenant", "small", "--description", "ci")
    keys = kora.cli("apikey", "list", "--tenant", "small")
    assert {k["key"] for k in keys} == {key["key"], second["key"]}
    assert all("secret" not in k for k in keys)
    kora.cli("apikey", "delete", key["key"], "--tenant", "small")
    with pytest.raises(KafkaException):
        AdminClient(conf).list_topics(timeout=3)
    assert "fits" in AdminClient(sasl(kora, second)).list_topics(timeout=10).topics
    # Another tenant's key cannot be deleted through this one.
    other = kora.cli("apikey", "delete", kora.info["api_key"]["key"], "--tenant", "small", check=False)
    assert other.returncode != 0 and "no API key" in other.stderr
    # Deleting the tenant deletes its topics and keys.
    kora.cli("tenant", "delete", "small")
    assert "small" not in {t["name"] for t in kora.cli("tenant", "list")}
    with pytest.raises(KafkaException):
        AdminClient(sasl(kora, second)).list_topics(timeout=3)
    missing = kora.cli("tenant", "describe", "small", check=False)
    assert missing.returncode != 0 and "unknown tenant" in missing.stderr
    # Tenant listings need the operator token.
    import urllib.request, urllib.error
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(kora.admin + "/v1/tenants", timeout=10)
    assert e.value.code == 401


def test_scram_users_of_a_tenant_through_kip_554(kora):
    from confluent_kafka.admin import (ScramCredentialInfo, ScramMechanism, UserScramCredentialDeletion,
                                       UserScramCredentialUpsertion)
    key = new_tenant(kora, "users")
    admin = AdminClient(sasl(kora, key, "SCRAM-SHA-256"))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    futures = admin.alter_user_scram_credentials([UserScramCredentialUpsertion("alice", info, b"alice-secret")])
    futures["alice"].result(30)
    described = admin.describe_user_scram_credentials(["alice"])["alice"].result(30)
    assert [(i.mechanism, i.iterations) for i in described.scram_credential_infos] == \
        [(ScramMechanism.SCRAM_SHA_512, 8192)]
    # Too few iterations: Kafka's UNACCEPTABLE_CREDENTIAL.
    low = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000)
    with pytest.raises(KafkaException) as e:
        admin.alter_user_scram_credentials([UserScramCredentialUpsertion("bob", low, b"x")])["bob"].result(30)
    assert e.value.args[0].name() == "UNACCEPTABLE_CREDENTIAL"
    # A tenant's user logs in as <tenant id>~<user> and lands in that tenant, limited by its
    # ACLs: without them it may not even create a topic.
    alice = {"key": f"{key['tenant']}~alice", "secret": "alice-secret"}
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)
    out = []
    denied = Producer({**sasl(kora, alice, "SCRAM-SHA-512"), "message.timeout.ms": 5000})
    denied.produce("alice-topic", b"x", on_delivery=lambda err, msg: out.append(err))
    denied.flush(10)
    assert out and out[0] is not None, out
    grants = [AclBinding(ResourceType.TOPIC, "alice-", ResourcePatternType.PREFIXED, "User:alice", "*",
                         AclOperation.ALL, AclPermissionType.ALLOW),
              AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, "User:alice", "*",
                         AclOperation.CREATE, AclPermissionType.ALLOW)]
    for f in admin.create_acls(grants).values():
        f.result(30)
    produce(sasl(kora, alice, "SCRAM-SHA-512"), "alice-topic", [b"from-alice"])
    assert "alice-topic" in AdminClient(sasl(kora, key)).list_topics(timeout=10).topics
    # Another tenant neither sees nor can use the name.
    other = AdminClient(sasl(kora, kora.info["api_key"]))
    with pytest.raises(KafkaException) as e:
        other.describe_user_scram_credentials(["alice"])["alice"].result(30)
    assert e.value.args[0].name() == "RESOURCE_NOT_FOUND"
    # A key limited by ACLs may not manage users.
    member = kora.cli("apikey", "create", "--tenant", "users", "--no-admin")
    limited = AdminClient(sasl(kora, member))
    # (Refused describes are checked with the Java client: confluent-kafka 2.16.1 aborts on
    # any DescribeUserScramCredentials answer with a top-level error, Kafka's as Kora's.)
    with pytest.raises(KafkaException) as e:
        limited.alter_user_scram_credentials([UserScramCredentialUpsertion("eve", info, b"x")])["eve"].result(30)
    assert e.value.args[0].name() == "CLUSTER_AUTHORIZATION_FAILED"
    deletion = UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_512)
    admin.alter_user_scram_credentials([deletion])["alice"].result(30)
    assert admin.describe_user_scram_credentials().result(30) == {}
    errors = []
    p = Producer({**sasl(kora, alice, "SCRAM-SHA-512"), "error_cb": errors.append})
    deadline = time.time() + 10
    while not errors and time.time() < deadline:
        p.poll(0.2)
    assert errors and errors[0].code() == -169, errors


def test_a_deleted_tenants_groups_go_and_never_reach_a_tenant_with_its_id():
    k = Kora(extra=["--auth", "--set", "offsets.retention.check.interval.ms=300"])
    try:
        first = new_tenant(k, "gone")
        produce(sasl(k, first), "orders", [b"x"])
        assert consume_all(sasl(k, first), "orders", "its-group", 1) == [b"x"]
        k.cli("tenant", "delete", "gone")
        time.sleep(2)
        # The same id again (as a fleet controller retrying with its own id would): empty.
        again = k.cli("tenant", "create", "back", "--id", first["tenant"])["api_key"]
        admin = AdminClient(sasl(k, again))
        assert admin.list_topics(timeout=10).topics == {}
        assert admin.list_consumer_groups().result(30).valid == []
    finally:
        k.stop()


def _frame(sock, api, version, corr, body, flexible):
    import struct
    header = struct.pack(">hhih", api, version, corr, 4) + b"test" + (b"\x00" if flexible else b"")
    sock.sendall(struct.pack(">i", len(header + body)) + header + body)
    size = sock.recv(4)
    if len(size) < 4:
        return None  # closed by the broker
    n = struct.unpack(">i", size)[0]
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def test_a_session_past_connections_max_reauth_ms_is_closed():
    import socket
    import struct
    k = Kora(extra=["--auth", "--set", "connections.max.reauth.ms=1000"])
    try:
        key = k.info["api_key"]
        host, port = k.bootstrap.split(":")
        s = socket.create_connection((host, int(port)), timeout=10)
        # Before authentication only ApiVersions and SaslHandshake are served.
        early = socket.create_connection((host, int(port)), timeout=10)
        assert _frame(early, 3, 1, 1, struct.pack(">i", -1), False) is None, "Metadata before SASL must close"
        mech = b"PLAIN"
        assert _frame(s, 17, 1, 1, struct.pack(">h", len(mech)) + mech, False)[4:6] == b"\x00\x00"
        token = b"\x00" + key["key"].encode() + b"\x00" + key["secret"].encode()
        resp = _frame(s, 36, 2, 2, bytes([len(token) + 1]) + token + b"\x00", True)
        assert resp[5:7] == b"\x00\x00", resp
        # SaslAuthenticate v1+ ends with session_lifetime_ms (then the tagged fields).
        assert struct.unpack(">q", resp[-9:-1])[0] == 1000
        assert _frame(s, 3, 1, 3, struct.pack(">i", -1), False) is not None, "within the session"
        time.sleep(1.5)
        assert _frame(s, 3, 1, 4, struct.pack(">i", -1), False) is None, "an expired session must close"
    finally:
        k.stop()


def test_a_tenant_cannot_fetch_as_a_follower(kora):
    """A follower's fetch (a replica id) moves high watermarks and the ISR: it needs CLUSTER_ACTION,
    which no tenant principal has. Sent raw, with a tenant's admin key: TOPIC_AUTHORIZATION_FAILED
    for every partition, while the same fetch as a consumer (replica id -1) reads."""
    import socket
    import struct
    key = new_tenant(kora, "follower-impostor")
    produce(sasl(kora, key), "orders", [b"one"])
    host, port = kora.bootstrap.split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    mech = b"PLAIN"
    assert _frame(s, 17, 1, 1, struct.pack(">h", len(mech)) + mech, False)[4:6] == b"\x00\x00"
    token = b"\x00" + key["key"].encode() + b"\x00" + key["secret"].encode()
    assert _frame(s, 36, 2, 2, bytes([len(token) + 1]) + token + b"\x00", True)[5:7] == b"\x00\x00"

    def fetch(replica_id, corr):
        topic = b"orders"
        body = struct.pack(">iiiib", replica_id, 0, 0, 1 << 20, 0)
        body += struct.pack(">ih", 1, len(topic)) + topic + struct.pack(">iiqi", 1, 0, 0, 1 << 20)
        resp = _frame(s, 1, 4, corr, body, False)
        assert resp is not None, "the connection was closed"
        # correlation id, throttle_time_ms, [responses]: topic, [partitions]: index, error_code
        n = struct.unpack(">h", resp[12:14])[0]
        assert resp[14:14 + n] == topic
        partitions, index, error = struct.unpack(">iih", resp[14 + n:14 + n + 10])
        return partitions, index, error

    assert fetch(-1, 3) == (1, 0, 0), "a consumer's fetch reads"
    assert fetch(1, 4) == (1, 0, 29), "a follower's fetch from a tenant is refused"


def test_the_fleet_provisions_a_tenant_with_its_own_id_once_and_finds_it_marked(kora):
    """What the fleet controller does on a cell: create a tenant with the id it chose, marked
    as its own, retry the same request (a restarted controller does), and list the cell's
    tenants to see which are its to reconcile."""
    body = {"name": "fleet-made", "id": "lkc-flt001", "managed_by": "fleet:test", "max_partitions": 10}
    first = kora.admin_call("POST", "/v1/tenants", body)
    assert first["tenant"]["id"] == "lkc-flt001" and first["tenant"]["managed_by"] == "fleet:test"
    key = first["api_key"]
    assert key["tenant"] == "lkc-flt001" and key["secret"]
    # The retry names the same tenant and makes no second key.
    again = kora.admin_call("POST", "/v1/tenants", body)
    assert again["tenant"]["id"] == "lkc-flt001" and again.get("api_key") is None
    assert again["tenant"]["api_keys"] == 1
    # The same id under another name is refused: ids are never reused for something else.
    try:
        kora.admin_call("POST", "/v1/tenants", {**body, "name": "other"})
        raise AssertionError("a taken tenant id was accepted under another name")
    except urllib.error.HTTPError as e:
        assert e.code == 409 and b"lkc-flt001" in e.read()
    listed = {t["id"]: t for t in kora.admin_call("GET", "/v1/tenants")}
    assert listed["lkc-flt001"]["managed_by"] == "fleet:test"
    operators = [t for t in listed.values() if t["id"] != "lkc-flt001"]
    assert operators and all("managed_by" not in t for t in operators), "cell-made tenants carry no mark"
    # Its key logs in.
    admin = AdminClient(sasl(kora, key))
    for f in admin.create_topics([NewTopic("fleet-topic", 1, 1)]).values():
        f.result(30)


def test_the_cell_reports_its_health_load_and_tenants_use_for_the_fleet():
    """`GET /v1/cell/report`: what the fleet controller reads from a cell for placement
    (health, the busiest broker's load, use against capacity), reconciliation (which tenants
    carry its mark) and metering (each tenant's totals)."""
    # An ingress limit of 200 kB/s makes the load visible: bytes against it.
    k = Kora(extra=["--auth", "--set", "quota.broker.ingress.bytes.per.second=200000"])
    try:
        idle = k.admin_call("GET", "/v1/cell/report")
        assert idle["healthy"] and idle["brokers"] == 1 and idle["brokers_reporting"] == 1
        assert idle["broker_load"] < 0.2, idle
        key = k.admin_call("POST", "/v1/tenants", {"name": "metered", "id": "lkc-meter1",
                                                   "managed_by": "fleet:test"})["api_key"]
        admin = AdminClient(sasl(k, key))
        for f in admin.create_topics([NewTopic("m", 3, 1)]).values():
            f.result(30)
        produce(sasl(k, key), "m", [b"x" * 1000] * 1000)
        deadline = time.monotonic() + 15
        while True:
            report = k.admin_call("GET", "/v1/cell/report")
            mine = {t["id"]: t for t in report["tenants"]}["lkc-meter1"]
            if mine["usage"]["bytes_in_total"] > 0 and report["broker_load"] > 0.2:
                break
            assert time.monotonic() < deadline, f"the report never showed the produce: {report}"
            time.sleep(0.5)
        assert mine["managed_by"] == "fleet:test" and mine["partitions"] == 3
        assert mine["usage"]["bytes_in_total"] >= 1_000_000, mine
        assert report["partitions"] >= 3 and report["ingress_bytes_per_second"] > 0
        # About 1 MB over the quota's 10 windows, against 200 kB/s: a load near 0.5.
        assert 0.2 < report["broker_load"] < 1.5, report
        others = [t for t in report["tenants"] if t["id"] != "lkc-meter1"]
        assert all("managed_by" not in t for t in others)
    finally:
        k.stop()
