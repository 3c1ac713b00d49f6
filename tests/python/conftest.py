"""Fixtures: a real `kora dev` process on 127.0.0.1 with a fresh data dir per test module."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KORA_BIN = os.environ.get("KORA_BIN", os.path.join(ROOT, "target", "debug", "kora"))
sys.path.insert(0, os.path.join(ROOT, "examples"))
import kora_admin  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Kora:
    def __init__(self, extra=()):
        self.tmp = tempfile.TemporaryDirectory()
        # The CLI finds this process's operator token in its own config dir.
        self.env = {**os.environ, "KORA_CONFIG_DIR": os.path.join(self.tmp.name, "config")}
        self.log = open(os.path.join(self.tmp.name, "kora.log"), "ab")
        self.port = free_port()
        self.extra = list(extra)
        self._start()

    def _start(self):
        self.proc = subprocess.Popen(
            [KORA_BIN, "--output", "json", "dev", "--data-dir", os.path.join(self.tmp.name, "data"),
             "--listen", f"127.0.0.1:{self.port}", "--admin-listen", "127.0.0.1:0", *self.extra],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, env=self.env)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("kora did not start: " + open(self.log.name).read())
        info = json.loads(line)
        self.info = info
        self.bootstrap = info["bootstrap"]
        self.admin = info["admin"]

    def cli(self, *args, check=True):
        """Runs `kora --output json ARGS --admin <this admin>`; the parsed answer, or the process."""
        p = subprocess.run([KORA_BIN, "--output", "json", *args, "--admin", self.admin],
                           capture_output=True, text=True, env=self.env, timeout=60)
        if not check:
            return p
        assert p.returncode == 0, f"kora {' '.join(args)} failed: {p.stderr}"
        return json.loads(p.stdout)

    def admin_call(self, method, path, body=None):
        """A call to this process's admin endpoint with its operator token (kora_admin.call)."""
        return kora_admin.call(self.info, method, path, body)

    def gauge(self, name, labels=""):
        """A series' value on /metrics; fails when it is absent."""
        v = kora_admin.metric(self.info, name, labels)
        assert v is not None, f"/metrics has no {name}{{{labels}}}"
        return v

    def restart(self):
        """Stops the process cleanly and starts it again on the same data dir and port."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self._start()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        self.tmp.cleanup()


@pytest.fixture(scope="module")
def kora():
    k = Kora()
    yield k
    k.stop()
