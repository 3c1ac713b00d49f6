"""A few calls to a Kora broker's admin endpoint, for tests and benchmarks: `info` is what
`kora dev` / `kora cell up` print at start (`admin`: the endpoint's URL, `token_file`: the
operator token)."""
import json
import urllib.request


def call(info, method, path, body=None):
    """`method path` with the operator token and a JSON body; the parsed answer (None: empty)."""
    with open(info["token_file"]) as f:
        token = f.read().strip()
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{info['admin']}{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def metric(info, name, labels=""):
    """The value of one series on /metrics (`labels`: e.g. 'tenant="lkc-1"'); None: absent."""
    series = f"{name}{{{labels}}} " if labels else f"{name} "
    with urllib.request.urlopen(f"{info['admin']}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(series):
                return float(line.split()[1])
    return None
