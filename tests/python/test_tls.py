"""TLS listeners on one `kora dev --auth` with four of them: SSL (the first), SASL_SSL, MTLS (SSL with
ssl.client.auth=required, set per listener) and RELOADING (SSL with its own keystore file, re-read
every 200 ms). Real clients: confluent-kafka (librdkafka) and kafka-python, and Python's ssl module
to look at the certificate a listener serves. Then a cell (one voter, two brokers) whose clients use
TLS while its brokers replicate over a SASL_SSL inter-broker listener that requires their client
certificates (SCRAM-SHA-512 inside mutual TLS). Certificates are made with the openssl CLI."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer

from conftest import KORA_BIN, Kora, free_port

assert shutil.which("openssl"), "these tests make their certificates with the openssl CLI"


class Pki:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and another CA nobody trusts."""

    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.ca = self.new_ca("ca", "Kora Test CA")
        self.other_ca = self.new_ca("other-ca", "Untrusted CA")
        # Kafka's PEM keystore file: the private key and the certificate chain in one file.
        self.server = self.keystore("server", "/CN=kora-server")
        self.reloading = self.keystore("reloading", "/CN=reload-1")
        # A broker's certificate serves its listeners and is its client certificate when it dials
        # another broker: both uses.
        self.broker = self.keystore("broker", "/CN=kora-broker", both=True)
        self.broker_cert = self.path("broker.crt")
        self.broker_key = self.path("broker.key")
        self.client_cert, self.client_key = self.leaf("client", "/C=US/O=Acme/OU=eng/CN=alice", server=False)
        self.rogue_cert, self.rogue_key = self.leaf("rogue", "/CN=mallory", server=False, ca="other-ca")

    def path(self, name):
        return os.path.join(self.dir, name)

    def openssl(self, *args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

    def new_ca(self, name, cn):
        self.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
                     "-keyout", self.path(f"{name}.key"), "-out", self.path(f"{name}.crt"), "-days", "2",
                     "-subj", f"/CN={cn}", "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return self.path(f"{name}.crt")

    def leaf(self, name, subject, server=True, ca="ca", both=False):
        key, csr, cert, ext = (self.path(f"{name}.{x}") for x in ("key", "csr", "crt", "ext"))
        self.openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
                     "-keyout", key, "-out", csr, "-subj", subject)
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n")
            usage = "serverAuth,clientAuth" if both else "serverAuth"
            f.write(f"extendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n" if server
                    else "extendedKeyUsage=clientAuth\n")
        self.openssl("x509", "-req", "-in", csr, "-CA", self.path(f"{ca}.crt"), "-CAkey", self.path(f"{ca}.key"),
                     "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
        return cert, key

    def keystore(self, name, subject, into=None, both=False):
        cert, key = self.leaf(name, subject, both=both)
        path = into or self.path(f"{name}.pem")
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(open(key).read() + open(cert).read())
        os.replace(tmp, path)  # as a renewal tool would: the listener never reads half a file
        return path


@pytest.fixture(scope="module")
def pki():
    p = Pki()
    yield p
    p.tmp.cleanup()


@pytest.fixture(scope="module")
def kora(pki):
    ports = {name: free_port() for name in ("SASL_SSL", "MTLS", "RELOADING")}
    listeners = ",".join(["SSL://127.0.0.1:0"] + [f"{n}://127.0.0.1:{p}" for n, p in ports.items()])
    settings = {
        "listeners": listeners,
        "listener.security.protocol.map": "SSL:SSL,SASL_SSL:SASL_SSL,MTLS:SSL,RELOADING:SSL",
        "ssl.keystore.location": pki.server,
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.truststore.location": pki.ca,
        "listener.name.reloading.ssl.keystore.location": pki.reloading,
        "listener.name.reloading.ssl.reload.interval.ms": "200",
    }
    extra = ["--auth"] + [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    k = Kora(extra=extra)
    k.ports = {name: f"127.0.0.1:{p}" for name, p in ports.items()}
    yield k
    k.stop()


def produce(conf, topic, values):
    p = Producer(conf)
    for v in values:
        p.produce(topic, v)
    assert p.flush(30) == 0


def consume(conf, topic, group, n):
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.time() + 30
    while len(got) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    return got


def refused(conf, *reasons):
    """The client cannot get metadata, and librdkafka says why (an error naming one of `reasons`)."""
    errors = []
    admin = AdminClient({**conf, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=1.5)

    def said():
        return any(r in e.str() for e in errors for r in reasons)

    deadline = time.time() + 5
    while not said() and time.time() < deadline:
        admin.poll(0.2)
    assert said(), [e.str() for e in errors]


def kafka_python_values(consumer, want):
    """What a kafka-python consumer reads until it has seen every value of `want` (or 30 s)."""
    seen = []
    deadline = time.time() + 30
    while not set(want) <= set(seen) and time.time() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            seen.extend(r.value for r in records)
    consumer.close()
    return seen


def test_ssl_listener_serves_confluent_and_kafka_python(kora, pki):
    assert kora.info["security_protocol"] == "SSL"
    conf = {"bootstrap.servers": kora.bootstrap, "security.protocol": "SSL", "ssl.ca.location": pki.ca}
    produce(conf, "tls-orders", [b"a", b"b", b"c"])
    assert sorted(consume(conf, "tls-orders", "tls-group", 3)) == [b"a", b"b", b"c"]
    # An SSL listener needs no SASL: the default namespace, as on PLAINTEXT.
    assert "tls-orders" in AdminClient(conf).list_topics(timeout=10).topics
    producer = KafkaProducer(bootstrap_servers=kora.bootstrap, security_protocol="SSL", ssl_cafile=pki.ca)
    producer.send("tls-orders", b"from-kafka-python").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer("tls-orders", bootstrap_servers=kora.bootstrap, security_protocol="SSL",
                             ssl_cafile=pki.ca, auto_offset_reset="earliest")
    assert b"from-kafka-python" in kafka_python_values(consumer, [b"from-kafka-python"])
    # Plaintext on a TLS port, or a client that does not trust the server's CA: refused, and the
    # broker carries on.
    refused({"bootstrap.servers": kora.bootstrap}, "brokers are down")
    refused({**conf, "ssl.ca.location": pki.other_ca}, "certificate verify failed")
    assert "tls-orders" in AdminClient(conf).list_topics(timeout=10).topics


def test_sasl_ssl_runs_sasl_inside_tls(kora, pki):
    created = kora.cli("tenant", "create", "tls-tenant")
    key = created["api_key"]
    assert {"address": kora.ports["SASL_SSL"], "security_protocol": "SASL_SSL"} in created["tenant"]["bootstrap"]
    for k, mechanism in ((kora.info["api_key"], "SCRAM-SHA-512"), (key, "PLAIN")):
        conf = {"bootstrap.servers": kora.ports["SASL_SSL"], "security.protocol": "SASL_SSL",
                "ssl.ca.location": pki.ca, "sasl.mechanisms": mechanism,
                "sasl.username": k["key"], "sasl.password": k["secret"]}
        produce(conf, "secure", [mechanism.encode()])
        md = AdminClient(conf).list_topics(timeout=10)
        assert md.cluster_id == k["tenant"] and set(md.topics) == {"secure"}, md.topics
    assert consume(conf, "secure", "g", 1) == [b"PLAIN"]
    auth = dict(bootstrap_servers=kora.ports["SASL_SSL"], security_protocol="SASL_SSL", ssl_cafile=pki.ca,
                sasl_mechanism="PLAIN", sasl_plain_username=key["key"], sasl_plain_password=key["secret"])
    producer = KafkaProducer(**auth)
    producer.send("secure", b"py").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer("secure", auto_offset_reset="earliest", **auth)
    assert sorted(kafka_python_values(consumer, [b"PLAIN", b"py"])) == [b"PLAIN", b"py"]
    # TLS without SASL, or a wrong secret inside TLS: refused.
    refused({"bootstrap.servers": kora.ports["SASL_SSL"], "security.protocol": "SSL", "ssl.ca.location": pki.ca},
            "brokers are down")
    refused({**conf, "sasl.password": "not-the-secret"}, "invalid credentials")


def test_mtls_listener_requires_a_certificate_its_ca_signed(kora, pki):
    conf = {"bootstrap.servers": kora.ports["MTLS"], "security.protocol": "SSL", "ssl.ca.location": pki.ca}
    refused(conf, "certificate required")
    # A certificate of a CA the server does not trust: refused (librdkafka, like OpenSSL, does not
    # even send one whose CA is not among those the server names).
    refused({**conf, "ssl.certificate.location": pki.rogue_cert, "ssl.key.location": pki.rogue_key},
            "certificate required", "unknown ca", "bad certificate")
    mtls = {**conf, "ssl.certificate.location": pki.client_cert, "ssl.key.location": pki.client_key}
    produce(mtls, "mtls-topic", [b"signed"])
    assert "mtls-topic" in AdminClient(mtls).list_topics(timeout=10).topics
    producer = KafkaProducer(bootstrap_servers=kora.ports["MTLS"], security_protocol="SSL", ssl_cafile=pki.ca,
                             ssl_certfile=pki.client_cert, ssl_keyfile=pki.client_key)
    producer.send("mtls-topic", b"py-signed").get(timeout=30)
    producer.close()
    # The other listeners do not ask for certificates (ssl.client.auth was set for MTLS alone).
    assert AdminClient({**conf, "bootstrap.servers": kora.bootstrap}).list_topics(timeout=10).topics


def served_cn(address, ca):
    """The CN of the certificate a listener serves to a new connection (verified against `ca`)."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            subject = dict(x[0] for x in tls.getpeercert()["subject"])
    return subject["commonName"]


def test_renewed_certificates_are_served_without_a_restart(kora, pki):
    address = kora.ports["RELOADING"]
    assert served_cn(address, pki.ca) == "reload-1"
    assert served_cn(kora.bootstrap, pki.ca) == "kora-server"
    held = ssl.create_default_context(cafile=pki.ca).wrap_socket(
        socket.create_connection(("127.0.0.1", int(address.rsplit(":", 1)[1])), timeout=5),
        server_hostname="127.0.0.1")
    pki.keystore("reloading-2", "/CN=reload-2", into=pki.reloading)
    deadline = time.time() + 10
    while served_cn(address, pki.ca) != "reload-2":
        assert time.time() < deadline, "the renewed certificate was not served within 10 s"
        time.sleep(0.1)
    # A connection made before keeps its certificate; clients connect with the new one.
    assert dict(x[0] for x in held.getpeercert()["subject"])["commonName"] == "reload-1"
    held.close()
    conf = {"bootstrap.servers": address, "security.protocol": "SSL", "ssl.ca.location": pki.ca}
    produce(conf, "renewed", [b"x"])
    # A broken renewal keeps the certificate in place, and says so in the log.
    with open(pki.reloading, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    time.sleep(1)
    assert served_cn(address, pki.ca) == "reload-2"
    log = open(kora.log.name).read()
    assert "TLS certificates reloaded" in log and "keeping the previous certificates" in log
    # The other listeners never changed.
    assert served_cn(kora.bootstrap, pki.ca) == "kora-server"


def test_a_tls_listener_without_a_keystore_does_not_start():
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([KORA_BIN, "dev", "--data-dir", os.path.join(d, "data"), "--admin-listen", "127.0.0.1:0",
                            "--set", "listeners=SSL://127.0.0.1:0"],
                           capture_output=True, text=True, timeout=30,
                           env={**os.environ, "KORA_CONFIG_DIR": os.path.join(d, "config")})
    assert p.returncode != 0
    assert "ssl.keystore.location" in p.stderr and "listener SSL" in p.stderr, p.stderr


def metric(admin, name):
    import urllib.request
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name):
                return float(line.split()[-1])
    raise AssertionError(f"{admin}/metrics has no {name}")


def test_a_cell_serves_tls_clients_and_replicates_over_authenticated_tls(pki):
    """One voter and two brokers: clients on an SSL listener; replication on a SASL_SSL
    inter-broker listener that requires a client certificate, brokers logging in with
    SCRAM-SHA-512 as a listener-local user. Nobody else gets in there."""
    from confluent_kafka.admin import NewTopic
    tmp = tempfile.TemporaryDirectory()
    d = tmp.name
    token = os.path.join(d, "admin.token")
    with open(token, "w") as f:
        f.write("tls-cell-test-token-" + os.urandom(8).hex() + "\n")
    os.chmod(token, 0o600)
    env = {**os.environ, "KORA_CONFIG_DIR": os.path.join(d, "config")}
    voter = f"127.0.0.1:{free_port()}"
    procs, clients, brokers, admins = [], [], [], []
    secret = "inter-broker-" + os.urandom(8).hex()
    jaas = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username=\\"broker\\" password=\\"{secret}\\" user_broker=\\"{secret}\\";')
    logs = []

    def spawn(name, args):
        log = open(os.path.join(d, f"{name}.log"), "wb")
        logs.append(log)
        procs.append(subprocess.Popen([KORA_BIN, *args], stdout=subprocess.DEVNULL, stderr=log,
                                      stdin=subprocess.DEVNULL, env=env))

    try:
        spawn("voter", ["meta", "--node-id", "1001", "--listen", voter, "--data-dir", os.path.join(d, "voter"),
                        "--voters", f"1001@{voter}", "--token-file", token])
        for node in (1, 2):
            client, broker, admin = (f"127.0.0.1:{free_port()}" for _ in range(3))
            clients.append(client)
            brokers.append(broker)
            admins.append(admin)
            config = os.path.join(d, f"broker-{node}.toml")
            with open(config, "w") as f:
                f.write(f'''node.id = {node}
data.dir = "{os.path.join(d, f"broker-{node}")}"
listeners = "BROKER://{broker},CLIENT://{client}"
listener.security.protocol.map = "BROKER:SASL_SSL,CLIENT:SSL"
inter.broker.listener.name = "BROKER"
sasl.mechanism.inter.broker.protocol = "SCRAM-SHA-512"
"listener.name.broker.scram-sha-512.sasl.jaas.config" = "{jaas}"
"listener.name.broker.ssl.keystore.location" = "{pki.broker}"
"listener.name.broker.ssl.truststore.location" = "{pki.ca}"
"listener.name.broker.ssl.client.auth" = "required"
super.users = "User:broker"
admin.listeners = "{admin}"
admin.token.file = "{token}"
controller.quorum.voters = "1001@{voter}"
ssl.keystore.location = "{pki.server}"
''')
            spawn(f"broker-{node}", ["broker", "--config", config])
        conf = {"bootstrap.servers": ",".join(clients), "security.protocol": "SSL", "ssl.ca.location": pki.ca,
                "error_cb": lambda e: None}
        admin = AdminClient(conf)
        deadline = time.time() + 40
        while True:
            try:
                if len(admin.list_topics(timeout=2).brokers) == 2:
                    break
            except KafkaException:
                pass
            assert time.time() < deadline and all(p.poll() is None for p in procs), \
                "the cell did not come up: " + "".join(open(l.name).read()[-2000:] for l in logs)
            time.sleep(0.3)
        # Metadata on the SSL listener gives each broker's SSL address.
        assert sorted(f"{b.host}:{b.port}" for b in admin.list_topics(timeout=10).brokers.values()) == sorted(clients)
        admin.create_topics([NewTopic("replicated", 2, 2)])["replicated"].result(30)
        produce({**conf, "acks": "all"}, "replicated", [b"r1", b"r2", b"r3", b"r4"])
        assert sorted(consume(conf, "replicated", "cell-group", 4)) == [b"r1", b"r2", b"r3", b"r4"]
        md = admin.list_topics(topic="replicated", timeout=10).topics["replicated"]
        assert all(sorted(p.isrs) == [1, 2] for p in md.partitions.values()), md.partitions
        # Each broker follows one partition and appended its records as a follower.
        deadline = time.time() + 30
        while not all(metric(a, "kora_replication_bytes_in") > 0 for a in admins):
            assert time.time() < deadline, [metric(a, "kora_replication_bytes_in") for a in admins]
            time.sleep(0.3)
        # The inter-broker listener: the brokers' login with their certificate works; without a
        # certificate, or with the right certificate and a wrong password, nothing does.
        ib = {"bootstrap.servers": brokers[0], "security.protocol": "SASL_SSL", "ssl.ca.location": pki.ca,
              "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "broker", "sasl.password": secret,
              "ssl.certificate.location": pki.broker_cert, "ssl.key.location": pki.broker_key}
        assert "replicated" in AdminClient(ib).list_topics(timeout=10).topics
        no_cert = {k: v for k, v in ib.items() if k not in ("ssl.certificate.location", "ssl.key.location")}
        refused(no_cert, "certificate required", "SSL handshake failed", "Disconnected")
        refused({**ib, "sasl.password": "wrong"}, "Authentication failed")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()
        tmp.cleanup()
