"""A resolver and a connection guard for SSRF tests: no DNS query and no connection leaves loopback.

- :class:`FakeResolver` replaces ``socket.getaddrinfo``: names come from a table the test writes
  (an answer may change from one look-up to the next, for DNS rebinding); IP literals are
  parsed locally (``AI_NUMERICHOST``); any other name fails as unknown. Every look-up is logged.
- :class:`ConnectionGuard` replaces urllib3's ``create_connection`` (what ``requests`` connects
  with): every attempt is logged; loopback targets connect, others are refused without a packet,
  unless the test reroutes that address to a loopback listener (to see what would arrive there).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import urllib3.util.connection

_real_getaddrinfo = socket.getaddrinfo
_real_create_connection = urllib3.util.connection.create_connection

Answer = list[str] | Callable[[], list[str]]


class FakeResolver:
    """``socket.getaddrinfo`` answering from ``names`` (lower case, no trailing dot)."""

    def __init__(self, names: dict[str, Answer] | None = None) -> None:
        self.names: dict[str, Answer] = dict(names or {})
        self.lookups: list[str] = []

    def answer(self, name: str, *addresses: str) -> None:
        self.names[name] = list(addresses)

    def sequence(self, name: str, *answers: Iterable[str]) -> None:
        """Answer successive look-ups of ``name`` with ``answers`` (the last one repeats)."""
        queue = [list(a) for a in answers]

        def next_answer() -> list[str]:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        self.names[name] = next_answer

    def getaddrinfo(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[tuple[Any, ...]]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:  # an IP literal: parsed here, never sent to a DNS server
            return _real_getaddrinfo(name, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror:
            pass
        self.lookups.append(name)
        key = name.lower().rstrip(".")
        if key not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = self.names[key]
        addresses = answer() if callable(answer) else answer
        port_number = int(port or 0)
        infos = []
        for text in addresses:
            address = ipaddress.ip_address(text)
            if address.version == 4:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (text, port_number)))
            else:
                infos.append(
                    (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (text, port_number, 0, 0))
                )
        return infos

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeResolver:
        monkeypatch.setattr(socket, "getaddrinfo", self.getaddrinfo)
        return self


class ConnectionGuard:
    """urllib3's ``create_connection``, logging every attempt and never leaving loopback."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []
        self.reroute: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def create_connection(self, address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        host, port = address[0], int(address[1])
        with self._lock:
            self.attempts.append((host, port))
        if host in self.reroute:
            return _real_create_connection(self.reroute[host], *args, **kwargs)
        try:
            loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConnectionRefusedError(f"test guard: no connection to {host}:{port}")
        return _real_create_connection(address, *args, **kwargs)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> ConnectionGuard:
        monkeypatch.setattr(urllib3.util.connection, "create_connection", self.create_connection)
        return self


class CountingListener:
    """A TCP listener on loopback that accepts and counts connections (and closes them)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
