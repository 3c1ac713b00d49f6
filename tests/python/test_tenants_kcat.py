"""kcat against `kora dev --auth`: SASL_PLAINTEXT logins with SCRAM-SHA-256 and PLAIN, produce (-P),
consume (-C -e), metadata (-L -J), tenants that each see their own cluster, and wrong passwords.

kcat links librdkafka, and librdkafka before 2.6.1 sends a wrong SCRAM client-final-message: its
nonce is the client nonce followed by the whole server nonce, which already starts with the client
nonce (confluentinc/librdkafka#4895). Apache Kafka 4.x refuses it (ScramSaslServer compares the
nonces with equals) and so does Kora. Debian 12's kcat 1.7.1 links librdkafka 2.0.2: for SCRAM its
kcat runs on the newer librdkafka that confluent-kafka (tests/python/requirements.txt) ships, by
LD_LIBRARY_PATH. PLAIN runs on kcat as installed.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Kora

KCAT = shutil.which("kcat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (scripts/setup-test-deps.sh)")

# The first librdkafka whose SCRAM client-final-message carries the server's nonce as is.
SCRAM_FIXED = (2, 6, 1)


@pytest.fixture(scope="module")
def kora():
    k = Kora(extra=["--auth"])
    yield k
    k.stop()


def kcat_version(env):
    """kcat -V's librdkafka version and builtin features."""
    out = subprocess.run([KCAT, "-V"], capture_output=True, text=True, env=env, timeout=30).stdout
    m = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)\S* builtin\.features=(\S+)", out)
    assert m, f"unexpected kcat -V output: {out}"
    return tuple(int(x) for x in m.groups()[:3]), m.group(4).rstrip(")").split(",")


@pytest.fixture(scope="module")
def system_kcat():
    """kcat as installed, with SASL PLAIN support."""
    env = dict(os.environ)
    _, features = kcat_version(env)
    if "sasl_plain" not in features:
        pytest.skip(f"this kcat's librdkafka has no SASL PLAIN: {features}")
    return env


@pytest.fixture(scope="module")
def scram_kcat():
    """An environment in which kcat's librdkafka does SCRAM as Kafka 4.x and Kora accept it."""
    env = dict(os.environ)
    version, features = kcat_version(env)
    if "sasl_scram" not in features:
        pytest.skip(f"this kcat's librdkafka has no SASL SCRAM: {features}")
    if version >= SCRAM_FIXED:
        yield env
        return
    import confluent_kafka

    site = os.path.dirname(os.path.dirname(confluent_kafka.__file__))
    bundled = sorted(glob.glob(os.path.join(site, "confluent_kafka.libs", "librdkafka*.so*")))
    if not bundled:
        pytest.skip(f"kcat's librdkafka {version} sends a SCRAM nonce that Kafka 4.x refuses "
                    "(fixed in 2.6.1) and confluent-kafka ships no newer librdkafka to run it on")
    with tempfile.TemporaryDirectory() as lib:
        os.symlink(bundled[0], os.path.join(lib, "librdkafka.so.1"))
        env["LD_LIBRARY_PATH"] = lib + (os.pathsep + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
        newer, features = kcat_version(env)
        if newer < SCRAM_FIXED or "sasl_scram" not in features:
            pytest.skip(f"kcat's librdkafka {version} sends a SCRAM nonce that Kafka 4.x refuses, and "
                        f"the one of confluent-kafka ({newer}) does not do SCRAM either")
        yield env


def auth(kora, key, mechanism, password=None):
    return ["-b", kora.bootstrap, "-X", "security.protocol=SASL_PLAINTEXT", "-X", f"sasl.mechanisms={mechanism}",
            "-X", f"sasl.username={key['key']}", "-X", f"sasl.password={password or key['secret']}"]


def kcat(env, args, input=None, check=True):
    p = subprocess.run([KCAT, *args], input=input, capture_output=True, text=True, env=env, timeout=90)
    if check:
        assert p.returncode == 0, f"kcat {' '.join(args)} exited {p.returncode}: {p.stderr}"
    return p


def produce(env, conn, topic, lines):
    kcat(env, [*conn, "-P", "-t", topic, "-K", ":"], input="".join(f"{l}\n" for l in lines))


def consume(env, conn, topic):
    """Every record of the topic as key=value, from the beginning to its end."""
    out = kcat(env, [*conn, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k=%s\\n"]).stdout
    return out.splitlines()


def metadata(env, conn):
    """kcat -L -J, and the cluster id librdkafka logged on the way (kcat's JSON has none)."""
    p = kcat(env, [*conn, "-L", "-J", "-X", "debug=metadata"])
    ids = set(re.findall(r"ClusterId: (\S+?),", p.stderr))
    assert len(ids) == 1, f"one cluster id expected in librdkafka's metadata log: {ids}"
    return json.loads(p.stdout), ids.pop()


def create_topic(kora, key, name, partitions=1):
    conf = {"bootstrap.servers": kora.bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
            "sasl.username": key["key"], "sasl.password": key["secret"]}
    admin = AdminClient(conf)  # kept alive until the topic is created
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def test_kcat_produces_consumes_and_reads_metadata_with_scram_sha_256(kora, scram_kcat):
    key = kora.info["api_key"]
    conn = auth(kora, key, "SCRAM-SHA-256")
    create_topic(kora, key, "kcat-scram")
    produce(scram_kcat, conn, "kcat-scram", ["k1:one", "k2:two", "k3:three"])
    assert consume(scram_kcat, conn, "kcat-scram") == ["k1=one", "k2=two", "k3=three"]
    md, cluster_id = metadata(scram_kcat, conn)
    # A tenant's cluster id is its logical cluster's id.
    assert cluster_id == key["tenant"]
    assert "kcat-scram" in {t["topic"] for t in md["topics"]}
    assert [b["id"] for b in md["brokers"]] == [1]


def test_kcat_as_installed_with_plain(kora, system_kcat):
    key = kora.info["api_key"]
    conn = auth(kora, key, "PLAIN")
    create_topic(kora, key, "kcat-plain")
    produce(system_kcat, conn, "kcat-plain", ["a:1", "b:2"])
    assert consume(system_kcat, conn, "kcat-plain") == ["a=1", "b=2"]
    md, cluster_id = metadata(system_kcat, conn)
    assert cluster_id == key["tenant"]
    assert "kcat-plain" in {t["topic"] for t in md["topics"]}


def test_two_tenants_each_see_only_their_own_through_kcat(kora, scram_kcat):
    keys = {}
    for name in ("kcat-alpha", "kcat-beta"):
        created = kora.cli("tenant", "create", name)
        assert created["api_key"]["tenant"] == created["tenant"]["id"]
        keys[name] = created["api_key"]
        create_topic(kora, keys[name], "orders")
    alpha = auth(kora, keys["kcat-alpha"], "SCRAM-SHA-256")
    beta = auth(kora, keys["kcat-beta"], "SCRAM-SHA-256")
    produce(scram_kcat, alpha, "orders", ["a:alpha-1", "a:alpha-2"])
    produce(scram_kcat, beta, "orders", ["b:beta-1"])
    assert consume(scram_kcat, alpha, "orders") == ["a=alpha-1", "a=alpha-2"]
    assert consume(scram_kcat, beta, "orders") == ["b=beta-1"]
    for name, conn in (("kcat-alpha", alpha), ("kcat-beta", beta)):
        md, cluster_id = metadata(scram_kcat, conn)
        assert cluster_id == keys[name]["tenant"]
        # Only the tenant's own topic, under its plain name.
        assert [t["topic"] for t in md["topics"]] == ["orders"], md["topics"]
    # The dev tenant sees neither.
    md, _ = metadata(scram_kcat, auth(kora, kora.info["api_key"], "SCRAM-SHA-256"))
    assert "orders" not in {t["topic"] for t in md["topics"]}


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_a_wrong_password_makes_kcat_fail_with_an_authentication_error(kora, mechanism, request):
    env = request.getfixturevalue("scram_kcat" if mechanism.startswith("SCRAM") else "system_kcat")
    conn = auth(kora, kora.info["api_key"], mechanism, password="not-the-secret")
    p = kcat(env, [*conn, "-L", "-m", "5"], check=False)
    assert p.returncode != 0, p
    assert "SASL authentication error" in p.stderr and "invalid credentials" in p.stderr, p.stderr
    assert mechanism in p.stderr, p.stderr
