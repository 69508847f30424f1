"""A minimal AMQP 0-9-1 client handshake over a socket: can `user` log in and open `vhost`?

Protocol header, Connection.Start -> Start-Ok (PLAIN), Tune -> Tune-Ok, Open(vhost) -> Open-Ok,
then Close -> Close-Ok. Enough to prove that the credentials and the vhost permission work for
AMQP itself (what Octavia's oslo.messaging does first), with no client library.

``amqp_login(host, port, user, password, vhost) -> (ok: bool, detail: str)``:
(True, "open") when the vhost opened; (False, "auth: ...") when the broker refused the login;
(False, "vhost: ...") when the login worked but the vhost could not be opened.
"""
from __future__ import annotations

import socket
import struct

FRAME_METHOD, FRAME_END = 1, 0xCE
CONNECTION = 10
START, START_OK, TUNE, TUNE_OK, OPEN, OPEN_OK, CLOSE, CLOSE_OK = 10, 11, 30, 31, 40, 41, 50, 51


def _shortstr(s: bytes) -> bytes:
    return struct.pack("B", len(s)) + s


def _longstr(s: bytes) -> bytes:
    return struct.pack(">I", len(s)) + s


def _table(items: dict[str, bool]) -> bytes:
    body = b"".join(_shortstr(k.encode()) + b"t" + struct.pack("B", int(v)) for k, v in items.items())
    return _longstr(body)


def _frame(channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", FRAME_METHOD, channel, len(payload)) + payload + bytes([FRAME_END])


def _method(cls: int, mid: int, args: bytes) -> bytes:
    return _frame(0, struct.pack(">HH", cls, mid) + args)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionResetError("the broker closed the connection")
        buf += chunk
    return buf


def _recv_method(sock: socket.socket) -> tuple[int, int, bytes]:
    while True:
        ftype, _ch, size = struct.unpack(">BHI", _recv_exact(sock, 7))
        payload = _recv_exact(sock, size)
        if _recv_exact(sock, 1) != bytes([FRAME_END]):
            raise ValueError("bad frame end")
        if ftype == FRAME_METHOD:
            cls, mid = struct.unpack(">HH", payload[:4])
            return cls, mid, payload[4:]


def _close_reason(args: bytes) -> str:
    code = struct.unpack(">H", args[:2])[0]
    n = args[2]
    return f"{code} {args[3:3 + n].decode(errors='replace')}"


def amqp_login(host: str, port: int, user: str, password: str, vhost: str, timeout: float = 10) -> tuple[bool, str]:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        cls, mid, _ = _recv_method(sock)
        if (cls, mid) != (CONNECTION, START):
            raise ValueError(f"expected Connection.Start, got {cls}.{mid}")
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
        # client properties {capabilities: {authentication_failure_close: true}}: a refused login is
        # answered with Connection.Close 403 instead of a silent disconnect
        props = _longstr(_shortstr(b"capabilities") + b"F" + _table({"authentication_failure_close": True}))
        sock.sendall(_method(CONNECTION, START_OK, props + _shortstr(b"PLAIN") + _longstr(response)
                             + _shortstr(b"en_US")))
        try:
            cls, mid, args = _recv_method(sock)
        except ConnectionResetError as exc:
            return False, f"auth: {exc}"
        if (cls, mid) == (CONNECTION, CLOSE):
            return False, f"auth: {_close_reason(args)}"
        if (cls, mid) != (CONNECTION, TUNE):
            raise ValueError(f"expected Connection.Tune, got {cls}.{mid}")
        channel_max, frame_max, _heartbeat = struct.unpack(">HIH", args[:8])
        sock.sendall(_method(CONNECTION, TUNE_OK, struct.pack(">HIH", channel_max, frame_max, 0)))
        sock.sendall(_method(CONNECTION, OPEN, _shortstr(vhost.encode()) + _shortstr(b"") + b"\x00"))
        try:
            cls, mid, args = _recv_method(sock)
        except ConnectionResetError as exc:
            return False, f"vhost: {exc}"
        if (cls, mid) == (CONNECTION, CLOSE):
            return False, f"vhost: {_close_reason(args)}"
        if (cls, mid) != (CONNECTION, OPEN_OK):
            raise ValueError(f"expected Connection.Open-Ok, got {cls}.{mid}")
        sock.sendall(_method(CONNECTION, CLOSE, struct.pack(">H", 200) + _shortstr(b"bye") + struct.pack(">HH", 0, 0)))
        try:
            _recv_method(sock)
        except (ConnectionResetError, OSError):
            pass
        return True, "open"
