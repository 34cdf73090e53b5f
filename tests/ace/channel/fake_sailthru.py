"""A fake Sailthru REST API on loopback: real HTTP, the real signature check, scripted errors.

Written from Sailthru's public API documentation (https://getstarted.sailthru.com/developers/
api-basics/technical/ and .../api/http-response-codes/), not from the client library, so the tests
catch a client that signs or encodes a request differently from what Sailthru accepts.

A request carries the form fields ``api_key``, ``format``, ``json`` and ``sig``; ``sig`` is the hex
MD5 of the shared secret followed by the values of every other field, sorted and concatenated.
Errors come back as ``{"error": <code>, "errormsg": <text>}`` with a 4xx/5xx status, and every
response carries the ``X-Rate-Limit-*`` headers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Sailthru's documented error codes (https://getstarted.sailthru.com/developers/api/errors/).
ERROR_MISSING_PARAMETER = 2
ERROR_INVALID_API_KEY = 3
ERROR_AUTHENTICATION_FAILED = 5
ERROR_INTERNAL = 9
ERROR_INVALID_EMAIL = 11
ERROR_UNKNOWN_TEMPLATE = 14
ERROR_RATE_LIMIT = 43

# Credentials and template the test fixtures configure on both sides.
TEST_API_KEY = "test-api-key"
TEST_SECRET = "test-shared-secret"
TEST_TEMPLATE = "ACE minimal template"

_STATUS_FOR_ERROR = {
    ERROR_MISSING_PARAMETER: 400,
    ERROR_INVALID_API_KEY: 401,
    ERROR_AUTHENTICATION_FAILED: 401,
    ERROR_INTERNAL: 500,
    ERROR_INVALID_EMAIL: 400,
    ERROR_UNKNOWN_TEMPLATE: 400,
    ERROR_RATE_LIMIT: 429,
}


def expected_signature(fields: dict[str, str], secret: str) -> str:
    """Sailthru's request signature: md5(secret + sorted values of all fields but ``sig``)."""
    values = sorted(value for name, value in fields.items() if name != "sig")
    return hashlib.md5((secret + "".join(values)).encode("utf-8")).hexdigest()


@dataclass
class ScriptedReply:
    """A reply the fake gives to the next /send request that passes authentication."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ReceivedRequest:
    """One HTTP request as the fake saw it, accepted or not."""

    method: str
    path: str
    fields: dict[str, str]
    status: int
    error_code: int | None


class FakeSailthru:
    """A threaded HTTP server on 127.0.0.1 (free port) that behaves like Sailthru's ``/send``.

    ``sends`` holds the accepted sends (``template``, ``email``, ``vars``, ``options`` ...) and
    ``requests`` every request with the status it got. ``queue_error`` / ``queue_reply`` script the
    next replies; ``delay`` makes each reply wait (to provoke client timeouts);
    ``send_rate_limit_headers = False`` leaves the ``X-Rate-Limit-*`` headers out.
    """

    def __init__(
        self,
        *,
        api_key: str,
        secret: str,
        templates: set[str] | None = None,
        rate_limit: int = 40,
    ) -> None:
        self.api_key = api_key
        self.secret = secret
        self.templates = templates  # None: accept any template name
        self.rate_limit = rate_limit
        self.rate_limit_reset: int | None = None  # epoch seconds; None: the next full minute
        self.delay = 0.0
        self.send_rate_limit_headers = True
        self.sends: list[dict[str, Any]] = []
        self.requests: list[ReceivedRequest] = []
        self._scripted: deque[ScriptedReply] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeSailthru:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # shutdown() waits up to one poll interval
            name="fake-sailthru",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSailthru:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL to hand to ``SailthruClient(api_url=...)``."""
        if self._server is None:
            raise RuntimeError("FakeSailthru is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- scripting ---------------------------------------------------------------------------
    def queue_error(
        self,
        code: int,
        message: str = "",
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next authenticated request with Sailthru error ``code``."""
        body = json.dumps({"error": code, "errormsg": message or f"error {code}"}).encode()
        reply_status = status or _STATUS_FOR_ERROR.get(code, 400)
        self.queue_reply(reply_status, body, headers)

    def queue_reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Answer the next authenticated request with exactly this status and body."""
        with self._lock:
            self._scripted.append(ScriptedReply(status, body, dict(headers or {})))

    # -- request handling (called from the server threads) --------------------------------------
    def _next_scripted(self) -> ScriptedReply | None:
        with self._lock:
            return self._scripted.popleft() if self._scripted else None

    def _rate_limit_headers(self) -> dict[str, str]:
        now = int(time.time())
        reset = self.rate_limit_reset if self.rate_limit_reset is not None else now - now % 60 + 60
        with self._lock:
            used = len(self.requests)
        return {
            "X-Rate-Limit-Limit": str(self.rate_limit),
            "X-Rate-Limit-Remaining": str(max(self.rate_limit - used, 0)),
            "X-Rate-Limit-Reset": str(reset),
        }

    def _record(
        self, method: str, path: str, fields: dict[str, str], status: int, code: int | None
    ) -> None:
        with self._lock:
            self.requests.append(ReceivedRequest(method, path, fields, status, code))

    def handle(self, method: str, path: str, fields: dict[str, str]) -> ScriptedReply:
        """Decide the reply for one request; the HTTP handler only does the I/O."""
        reply = self._handle(method, path, fields)
        code = None
        try:
            parsed = json.loads(reply.body)
            if isinstance(parsed, dict) and "error" in parsed:
                code = int(parsed["error"])
        except ValueError:
            pass
        self._record(method, path, fields, reply.status, code)
        # Scripted headers (e.g. a specific X-Rate-Limit-Reset) win over the defaults.
        if self.send_rate_limit_headers:
            reply.headers = {**self._rate_limit_headers(), **reply.headers}
        return reply

    def _handle(self, method: str, path: str, fields: dict[str, str]) -> ScriptedReply:
        if path != "/send":
            return _error(6, f"Unrecognized API endpoint {path}", 404)
        if method != "POST":
            return _error(1, "Unsupported HTTP method", 405)
        for name in ("api_key", "sig", "format", "json"):
            if name not in fields:
                return _error(ERROR_MISSING_PARAMETER, f"Missing required parameter: {name}")
        if not hmac.compare_digest(fields["api_key"], self.api_key):
            return _error(ERROR_INVALID_API_KEY, "Invalid API key")
        if not hmac.compare_digest(fields["sig"], expected_signature(fields, self.secret)):
            return _error(ERROR_AUTHENTICATION_FAILED, "Authentication failed")
        if fields["format"] != "json":
            return _error(ERROR_MISSING_PARAMETER, "format must be json")
        try:
            data = json.loads(fields["json"])
        except ValueError:
            return _error(ERROR_MISSING_PARAMETER, "json parameter is not valid JSON")
        scripted = self._next_scripted()
        if scripted is not None:
            return scripted
        template = data.get("template")
        email = data.get("email")
        if not template:
            return _error(ERROR_MISSING_PARAMETER, "Missing required parameter: template")
        if not email or "@" not in str(email):
            return _error(ERROR_INVALID_EMAIL, f"Invalid email: {email}")
        if self.templates is not None and template not in self.templates:
            return _error(ERROR_UNKNOWN_TEMPLATE, f"Unknown template: {template}")
        send_id = uuid.uuid4().hex[:16]
        with self._lock:
            self.sends.append({"send_id": send_id, **data})
        body = {"send_id": send_id, "email": email, "template": template, "status": "unknown"}
        return ScriptedReply(200, json.dumps(body).encode())


def _error(code: int, message: str, status: int | None = None) -> ScriptedReply:
    body = json.dumps({"error": code, "errormsg": message}).encode()
    return ScriptedReply(status or _STATUS_FOR_ERROR.get(code, 400), body)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSailthru
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _fields(self) -> dict[str, str]:
        split = urlsplit(self.path)
        raw = split.query
        if self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8")
        # Sailthru sends each field once; keep the last value if a client repeats one.
        return {name: values[-1] for name, values in parse_qs(raw, keep_blank_values=True).items()}

    def _serve(self) -> None:
        fields = self._fields()
        path = urlsplit(self.path).path
        if self.fake.delay:
            time.sleep(self.fake.delay)
        reply = self.fake.handle(self.command, path, fields)
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to answer

    do_GET = _serve
    do_POST = _serve
    do_DELETE = _serve
