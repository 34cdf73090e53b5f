"""A fake Braze REST API on loopback: real HTTP, the checks Braze makes, scripted replies.

Written from Braze's public API documentation (https://www.braze.com/docs/api/errors/, the
``/messages/send`` and ``/campaigns/trigger/send`` endpoint pages and the email object page), so
the tests catch a client whose requests Braze would refuse:

- the API key comes as ``Authorization: Bearer <key>`` (else 401);
- the body is JSON sent as ``application/json`` (else 400);
- ``/messages/send`` needs ``external_user_ids`` (at most 50 strings) and ``messages.email`` with
  the workspace's ``app_id``, a ``from`` address (``Display Name <address>``) and a ``body``;
- ``/campaigns/trigger/send`` needs a known ``campaign_id`` and ``recipients``, each with an
  ``external_user_id`` string;
- success is ``201 {"message": "success", "dispatch_id": ...}``; every reply carries the
  ``X-RateLimit-*`` headers; an error is ``{"message": <why>}`` with its 4xx/5xx status.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

TEST_API_KEY = "braze-test-api-key"
TEST_APP_ID = "braze-test-app-id"
TEST_CAMPAIGN = "campaign-welcome"

MESSAGE_SEND = "/messages/send"
CAMPAIGN_SEND = "/campaigns/trigger/send"
SUBSCRIPTION_STATES = {"opted_in", "subscribed", "all"}
# "address" or "Display Name <address>" (a quoted display name allowed).
_FROM = re.compile(
    r'^(?:(?:"(?:[^"\\]|\\.)*"|[^<>"]+)\s*<[^<>@\s]+@[^<>@\s]+>|[^<>@\s]+@[^<>@\s]+)$'
)


@dataclass
class Reply:
    """What the fake answers; ``drop`` closes the connection without answering."""

    status: int = 201
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


@dataclass
class ReceivedRequest:
    """One request as the fake saw it, accepted or not."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    json: Any
    status: int
    client_port: int


class FakeBraze:
    """A threaded HTTP/1.1 server on 127.0.0.1 (free port) behaving like Braze's send API."""

    def __init__(
        self,
        api_key: str = TEST_API_KEY,
        app_id: str = TEST_APP_ID,
        campaigns: set[str] | None = None,
    ) -> None:
        self.api_key = api_key
        self.app_id = app_id
        self.campaigns = set(campaigns if campaigns is not None else {TEST_CAMPAIGN})
        self.requests: list[ReceivedRequest] = []
        self.sends: list[dict[str, Any]] = []  # accepted bodies, with "path"
        self.delay = 0.0
        self.rate_limit_reset: int | None = None
        self._scripted: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeBraze:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeBraze:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def queue(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        """Answer the next authenticated, well-formed request with this (JSON ``body``)."""
        with self._lock:
            self._scripted.append(Reply(status, body, dict(headers or {})))

    def queue_drop(self) -> None:
        """Read the next authenticated request whole, then close without an answer."""
        with self._lock:
            self._scripted.append(Reply(drop=True))

    # -- deciding the reply (called from the server threads) ------------------------------------
    def handle(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, port: int
    ) -> Reply:
        data: Any = None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            pass
        reply = self._handle(method, path, headers, raw, data)
        with self._lock:
            status = 0 if reply.drop else reply.status
            self.requests.append(ReceivedRequest(method, path, headers, raw, data, status, port))
            if reply.status == 201 and not reply.drop and reply.body is None:
                self.sends.append({"path": path, **data})
        if reply.body is None and not reply.drop:
            reply.body = {"message": "success", "dispatch_id": uuid.uuid4().hex}
        reply.headers = {**self._rate_limit_headers(), **reply.headers}
        return reply

    def _handle(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, data: Any
    ) -> Reply:
        if path not in (MESSAGE_SEND, CAMPAIGN_SEND):
            return _error(404, f"Not found: {path}")
        if method != "POST":
            return _error(405, "Method not allowed")
        auth = headers.get("authorization", "")
        if not hmac.compare_digest(auth, f"Bearer {self.api_key}"):
            return _error(401, "Invalid API key")
        if not headers.get("content-type", "").startswith("application/json"):
            return _error(400, "Content-Type must be application/json")
        if not isinstance(data, dict):
            return _error(400, "Request body is not a JSON object")
        with self._lock:
            scripted = self._scripted.popleft() if self._scripted else None
        if scripted is not None:
            return scripted
        problem = self._check_message(data) if path == MESSAGE_SEND else self._check_campaign(data)
        return _error(400, problem) if problem else Reply(201)

    def _check_message(self, data: dict[str, Any]) -> str | None:
        ids = data.get("external_user_ids")
        if not isinstance(ids, list) or not ids or len(ids) > 50:
            return "external_user_ids must be a list of 1 to 50 external ids"
        if not all(isinstance(i, str) and i for i in ids):
            return "external_user_ids must be strings"
        state = data.get("recipient_subscription_state", "subscribed")
        if state not in SUBSCRIPTION_STATES:
            return f"Invalid recipient_subscription_state: {state}"
        email = (data.get("messages") or {}).get("email")
        if not isinstance(email, dict):
            return "messages.email is required"
        if email.get("app_id") != self.app_id:
            return "Invalid app_id"
        if not isinstance(email.get("from"), str) or not _FROM.match(email["from"]):
            return f"Invalid from address: {email.get('from')!r}"
        if not isinstance(email.get("body"), str) or not email["body"]:
            return "body is required"
        for name in ("subject", "plaintext_body", "reply_to"):
            if name in email and not isinstance(email[name], str):
                return f"{name} must be a string"
        if "headers" in email and not isinstance(email["headers"], dict):
            return "headers must be an object"
        return None

    def _check_campaign(self, data: dict[str, Any]) -> str | None:
        if data.get("campaign_id") not in self.campaigns:
            return f"Invalid campaign_id: {data.get('campaign_id')}"
        recipients = data.get("recipients")
        if not isinstance(recipients, list) or not recipients or len(recipients) > 50:
            return "recipients must be a list of 1 to 50 recipients"
        for recipient in recipients:
            if not isinstance(recipient, dict) or not isinstance(
                recipient.get("external_user_id"), str
            ):
                return "each recipient needs an external_user_id string"
            if not isinstance(recipient.get("trigger_properties", {}), dict):
                return "trigger_properties must be an object"
        return None

    def _rate_limit_headers(self) -> dict[str, str]:
        now = int(time.time())
        reset = self.rate_limit_reset if self.rate_limit_reset is not None else now + 3600
        return {
            "X-RateLimit-Limit": "250000",
            "X-RateLimit-Remaining": "249999",
            "X-RateLimit-Reset": str(reset),
        }


def _error(status: int, message: str) -> Reply:
    return Reply(status, {"message": message})


class _Handler(BaseHTTPRequestHandler):
    fake: FakeBraze
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        path = urlsplit(self.path).path
        reply = self.fake.handle(self.command, path, headers, raw, self.client_address[1])
        if reply.drop:
            self.close_connection = True
            self.connection.close()
            return
        if self.fake.delay:
            time.sleep(self.fake.delay)
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
