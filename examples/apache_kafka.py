"""Apache Kafka as a peer on 127.0.0.1: KRaft brokers started from the Maven Central artifacts
that scripts/setup-java-deps.sh pinned and cached (tests/java/target/kafka.classpath), the way
bin/kafka-storage.sh and bin/kafka-server-start.sh run them: `kafka.tools.StorageTool format`,
then `kafka.Kafka server.properties` with the start script's default heap (-Xmx1G -Xms1G).

    from apache_kafka import ApacheKafka
    with ApacheKafka(nodes=1) as k:      # or nodes=3: three combined broker+controller nodes
        print(k.bootstrap)

Kafka's defaults are kept (acks=all from clients; log.flush.interval.messages unset, so an
acknowledged record is in the page cache of the in-sync replicas, not yet on disk), except
what a single node needs (internal topics' replication factor 1) and `extra` settings.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLASSPATH_FILE = os.path.join(ROOT, "tests", "java", "target", "kafka.classpath")
LOG4J = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders><Console name="stderr" target="SYSTEM_ERR"><PatternLayout pattern="%d %-5level %c{1} - %msg%n"/></Console></Appenders>
  <Loggers><Root level="warn"><AppenderRef ref="stderr"/></Root></Loggers>
</Configuration>
"""
START_TIMEOUT_S = 120


def classpath():
    if not os.path.exists(CLASSPATH_FILE):
        subprocess.run([os.path.join(ROOT, "scripts", "setup-java-deps.sh")], check=True)
    with open(CLASSPATH_FILE) as f:
        return f.read().strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Apache Kafka exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"Apache Kafka did not listen on {port} within {timeout} s")


class ApacheKafka:
    def __init__(self, nodes=1, extra=None, heap="1G"):
        assert nodes in (1, 3), "one node, or a three-node KRaft quorum"
        self.nodes, self.extra, self.heap = nodes, dict(extra or {}), heap
        self.tmp = tempfile.mkdtemp(prefix="apache-kafka-")
        self.procs = []
        self.ports = [free_port() for _ in range(nodes)]
        self.controller_ports = [free_port() for _ in range(nodes)]
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        self.start_seconds = None  # spawn until every node listens
        self.spawned_at = None  # time.monotonic() when the servers were spawned (after format)

    def _props(self, i):
        node = i + 1
        voters = ",".join(f"{n + 1}@127.0.0.1:{p}" for n, p in enumerate(self.controller_ports))
        rf = 1 if self.nodes == 1 else 3
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.ports[i]},CONTROLLER://127.0.0.1:{self.controller_ports[i]}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.ports[i]}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": os.path.join(self.tmp, f"node-{node}", "logs"),
            "offsets.topic.replication.factor": str(rf),
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": str(min(rf, 2)),
            "group.initial.rebalance.delay.ms": "0",
        }
        if self.nodes == 3:
            props["min.insync.replicas"] = "2"
            props["default.replication.factor"] = "3"
        props.update(self.extra)
        return props

    def start(self):
        cp = classpath()
        java = shutil.which("java") or "java"
        log4j = os.path.join(self.tmp, "log4j2.xml")
        with open(log4j, "w") as f:
            f.write(LOG4J)
        cluster_id = subprocess.run([java, "-cp", cp, "kafka.tools.StorageTool", "random-uuid"],
                                    capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        configs = []
        for i in range(self.nodes):
            path = os.path.join(self.tmp, f"server-{i + 1}.properties")
            with open(path, "w") as f:
                f.writelines(f"{k}={v}\n" for k, v in self._props(i).items())
            configs.append(path)
            subprocess.run([java, f"-Dlog4j2.configurationFile={log4j}", "-cp", cp, "kafka.tools.StorageTool",
                            "format", "-t", cluster_id, "-c", path], capture_output=True, text=True, check=True)
        self.spawned_at = began = time.monotonic()
        for i, path in enumerate(configs):
            err = open(os.path.join(self.tmp, f"node-{i + 1}.log"), "wb")
            self.procs.append(subprocess.Popen(
                [java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                 "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
                 "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
                 "-cp", cp, "kafka.Kafka", path],
                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL))
            err.close()
        for port, proc in zip(self.ports, self.procs):
            wait_listening(port, proc, START_TIMEOUT_S)
        self.start_seconds = time.monotonic() - began
        return self

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def log_tail(self, lines=30):
        out = []
        for i in range(self.nodes):
            try:
                with open(os.path.join(self.tmp, f"node-{i + 1}.log"), errors="replace") as f:
                    out.append(f"--- node {i + 1}\n" + "".join(f.readlines()[-lines:]))
            except OSError:
                pass
        return "\n".join(out)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        self.procs = []
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
