"""Count the write calls an openstacksdk Connection makes (for "a converged reconcile writes nothing").

    with WriteCounter(conn) as w:
        ensure_something(conn, ...)
    assert w.writes == []

Every request goes through ``conn.session.request``; POST/PUT/PATCH/DELETE count as writes,
except token requests (``/auth/tokens``), which authenticate rather than change the cloud.
"""
from __future__ import annotations

from typing import Any

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class WriteCounter:
    def __init__(self, conn: Any):
        self.conn = conn
        self.requests: list[tuple[str, str]] = []
        self._orig = None

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [(m, u) for m, u in self.requests if m in WRITE_METHODS and "/auth/tokens" not in u]

    def __enter__(self) -> "WriteCounter":
        session = self.conn.session
        self._orig = session.request

        def request(url: str, method: str, *args: Any, **kwargs: Any) -> Any:
            self.requests.append((method.upper(), str(url)))
            return self._orig(url, method, *args, **kwargs)

        session.request = request
        return self

    def __exit__(self, *exc: Any) -> None:
        self.conn.session.request = self._orig
