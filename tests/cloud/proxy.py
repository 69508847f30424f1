"""A fault-injecting HTTP proxy in front of the loopback cloud's APIs (tests only).

``ProxiedCloud(conn_config)`` starts one proxy per API (Keystone, Neutron, Glance, Nova) on
127.0.0.1 ports the OS picks, and writes a clouds.yaml whose auth URL and endpoint overrides
send every request through them. Each proxy records the requests it forwarded and can answer
with an error instead (``fail(status=503, count=N)`` or ``fail(status=503, seconds=T)``), to
test that the operator retries transient failures and converges without duplicates. ``hold`` keeps
matching requests waiting until ``release``: a process is then known to be in the middle of that call.
"""
from __future__ import annotations

import http.client
import http.server
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import yaml

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}


@dataclass
class Fault:
    status: int = 503
    count: int | None = None          # fail this many requests
    until: float | None = None        # or fail until this monotonic time
    methods: frozenset[str] | None = None   # only these methods (None: all)

    def applies(self, method: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.count is not None:
            return self.count > 0
        return self.until is not None and time.monotonic() < self.until


@dataclass
class Gate:
    """Holds the requests of one method whose path contains ``path_part`` until it is opened."""
    method: str
    path_part: str
    opened: threading.Event = field(default_factory=threading.Event)
    held: int = 0                      # requests that have waited here
    fail_held: int | None = None       # status answered to the held ones when opened (None: forwarded)

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self.path_part in path.split("?")[0]


@dataclass
class Proxy:
    upstream: str                      # http://127.0.0.1:9696
    requests: list[tuple[str, str, int]] = field(default_factory=list)   # (method, path, status sent)
    fault: Fault | None = None
    gate: Gate | None = None
    server: http.server.ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail(self, status: int = 503, count: int | None = None, seconds: float | None = None,
             methods: set[str] | None = None) -> None:
        with self.lock:
            self.fault = Fault(status, count, time.monotonic() + seconds if seconds else None,
                               frozenset(methods) if methods else None)

    def heal(self) -> None:
        with self.lock:
            self.fault = None

    def hold(self, method: str, path_part: str) -> Gate:
        """From now on, hold ``method`` requests whose path contains ``path_part`` (see ``release``)."""
        with self.lock:
            self.gate = Gate(method, path_part)
            return self.gate

    def release(self, fail_held: int | None = None) -> None:
        """Open the gate: the held requests are forwarded, or answered ``fail_held`` (their client may be
        gone: a process the test killed while it waited), and later ones pass."""
        with self.lock:
            gate = self.gate
        if gate is not None:
            gate.fail_held = fail_held
            gate.opened.set()

    def injected(self) -> int:
        return sum(1 for _, _, s in self.requests if s >= 500 and s == (self.fault.status if self.fault else 503))

    def _take_fault(self, method: str) -> int | None:
        with self.lock:
            f = self.fault
            if f and f.applies(method):
                if f.count is not None:
                    f.count -= 1
                return f.status
        return None

    def start(self) -> "Proxy":
        proxy = self
        up = urllib.parse.urlsplit(self.upstream)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        out += self.rfile.read(size)
                        self.rfile.readline()
                    return bytes(out)
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else None

            def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in HOP_BY_HOP:
                        # rewrite absolute URLs in Location headers to the proxy
                        if k.lower() == "location":
                            v = v.replace(proxy.upstream, proxy.url)
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                self.close_connection = True

            def _handle(self) -> None:
                body = self._body()
                gate = proxy.gate
                if gate is not None and not gate.opened.is_set() and gate.matches(self.command, self.path):
                    with proxy.lock:
                        gate.held += 1
                    gate.opened.wait()
                    if gate.fail_held is not None:
                        proxy.requests.append((self.command, self.path, gate.fail_held))
                        self._send(gate.fail_held, [("Content-Type", "application/json")],
                                   b'{"error": {"message": "held, then failed by the test proxy"}}')
                        return
                status = proxy._take_fault(self.command)
                if status is not None:
                    proxy.requests.append((self.command, self.path, status))
                    self._send(status, [("Content-Type", "application/json")],
                               b'{"error": {"message": "injected by the test proxy", "code": %d}}' % status)
                    return
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Host"] = up.netloc
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    # service documents carry absolute URLs of the upstream: point them at the proxy
                    if resp.getheader("Content-Type", "").startswith("application/json"):
                        data = data.replace(proxy.upstream.encode(), proxy.url.encode())
                    proxy.requests.append((self.command, self.path, resp.status))
                    self._send(resp.status, resp.getheaders(), data)
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name=f"proxy-{up.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def _origin(url: str) -> tuple[str, str]:
    """(scheme://host:port, path) of an endpoint URL."""
    p = urllib.parse.urlsplit(url)
    return f"{p.scheme}://{p.netloc}", p.path


class ProxiedCloud:
    """Proxies in front of every API the operator uses, and a clouds.yaml that goes through them."""

    SERVICES = {"identity": "identity", "network": "network", "image": "image", "compute": "compute"}

    def __init__(self, conn: Any, clouds_yaml_path: str, cloud: str):
        self.proxies: dict[str, Proxy] = {}
        doc = yaml.safe_load(open(clouds_yaml_path).read())
        entry = dict(doc["clouds"][cloud])
        overrides: dict[str, str] = {}
        for stype in self.SERVICES:
            origin, path = _origin(conn.endpoint_for(stype))
            if origin not in {p.upstream for p in self.proxies.values()}:
                self.proxies[stype] = Proxy(origin).start()
            proxy = next(p for p in self.proxies.values() if p.upstream == origin)
            overrides[f"{stype}_endpoint_override"] = proxy.url + path
        auth_origin, auth_path = _origin(entry["auth"]["auth_url"])
        ks = next(p for p in self.proxies.values() if p.upstream == auth_origin)
        entry["auth"] = {**entry["auth"], "auth_url": ks.url + auth_path}
        entry.update(overrides)
        self.cloud_entry = entry

    def clouds_yaml(self, name: str = "proxied") -> bytes:
        return yaml.safe_dump({"clouds": {name: self.cloud_entry}}).encode()

    def fail(self, service: str, **kw: Any) -> None:
        self.proxies[service].fail(**kw)

    def heal(self) -> None:
        for p in self.proxies.values():
            p.heal()

    def stop(self) -> None:
        for p in self.proxies.values():
            p.stop()
