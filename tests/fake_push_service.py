"""A Web Push service on loopback, and browser-side helpers, for testing the push channel for real.

- :class:`FakePushService` is a tiny HTTP/1.1 server on 127.0.0.1 that accepts RFC 8030 push
  requests at ``/push/<name>``, records them, and answers what a test scripts (201 by default;
  410 for a gone subscription, 429 with ``Retry-After`` ...). It records every method (a client
  following a redirect with a GET shows up too) and, given a TLS context
  (:func:`tls_server_context`), serves https and records the SNI names clients sent.
- :class:`BrowserSubscription` is what ``pushManager.subscribe()`` makes in a browser: an ECDH
  P-256 key pair and a 16-byte auth secret; it decrypts what it receives (RFC 8291, aes128gcm),
  with an implementation written here on ``cryptography`` so the test does not trust the library
  that encrypted the message to also decrypt it.
- :func:`verify_vapid` checks a request's ``Authorization: vapid t=<JWT>, k=<key>`` header
  (RFC 8292): the ES256 signature against the public key, and the claims.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import ssl
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def new_vapid_private_key() -> tuple[str, str]:
    """A fresh VAPID key pair as the environment holds it: (raw private key, public key),
    both base64url."""
    key = ec.generate_private_key(ec.SECP256R1())
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    return b64url_encode(raw), b64url_encode(public_bytes(key.public_key()))


# The browser side
# ------------------------------------------------------------------------------


class BrowserSubscription:
    """A push subscription as a browser makes it, able to decrypt its own messages."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.auth_secret = os.urandom(16)

    @property
    def p256dh(self) -> str:
        return b64url_encode(public_bytes(self.private_key.public_key()))

    @property
    def auth(self) -> str:
        return b64url_encode(self.auth_secret)

    def to_json(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` returns in a browser."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        }

    def decrypt(self, body: bytes) -> bytes:
        """Decrypt an aes128gcm push message body (RFC 8291 section 3.4, RFC 8188 section 2).

        Raises:
            ValueError: If the body is not a single valid aes128gcm record for this subscription.
        """
        if len(body) < 21:
            raise ValueError("body shorter than the aes128gcm header")
        salt, record_size, id_len = body[:16], int.from_bytes(body[16:20], "big"), body[20]
        sender_public = body[21 : 21 + id_len]
        ciphertext = body[21 + id_len :]
        if len(ciphertext) > record_size:
            raise ValueError("more than one record; push messages are one record")
        sender_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_public)
        ecdh_secret = self.private_key.exchange(ec.ECDH(), sender_key)
        ua_public = public_bytes(self.private_key.public_key())
        key_info = b"WebPush: info\x00" + ua_public + sender_public
        ikm = HKDF(hashes.SHA256(), 32, salt=self.auth_secret, info=key_info).derive(ecdh_secret)
        cek = HKDF(hashes.SHA256(), 16, salt=salt, info=b"Content-Encoding: aes128gcm\x00").derive(
            ikm
        )
        nonce = HKDF(hashes.SHA256(), 12, salt=salt, info=b"Content-Encoding: nonce\x00").derive(
            ikm
        )
        padded = AESGCM(cek).decrypt(nonce, ciphertext, None)
        stripped = padded.rstrip(b"\x00")
        if not stripped or stripped[-1] != 2:
            raise ValueError("missing the last-record padding delimiter (0x02)")
        return stripped[:-1]

    def decrypt_json(self, body: bytes) -> dict[str, Any]:
        return json.loads(self.decrypt(body))


# VAPID
# ------------------------------------------------------------------------------


def verify_vapid(
    authorization: str, *, public_key: str, audience: str, subject: str
) -> dict[str, Any]:
    """Check an RFC 8292 ``Authorization`` header and return the JWT claims.

    Raises:
        AssertionError: Wrong scheme, key, signature or claims.
    """
    scheme, _, params = authorization.partition(" ")
    assert scheme.lower() == "vapid", f"scheme is {scheme!r}, not vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert fields.get("k") == public_key, "k is not the server's VAPID public key"
    header_b64, payload_b64, signature_b64 = fields["t"].split(".")
    header = json.loads(b64url_decode(header_b64))
    assert header.get("alg") == "ES256", header
    signature = b64url_decode(signature_b64)
    assert len(signature) == 64, "an ES256 JWS signature is r||s, 64 bytes"
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(public_key))
    try:
        key.verify(der, f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AssertionError("the VAPID JWT signature does not verify") from None
    claims = json.loads(b64url_decode(payload_b64))
    assert claims.get("aud") == audience, claims
    assert claims.get("sub") == subject, claims
    now = time.time()
    assert now < claims["exp"] <= now + 24 * 3600, "exp must be in the next 24 hours"
    return claims


# The push service
# ------------------------------------------------------------------------------


@attrs.define
class PushRequest:
    """One request the push service received."""

    method: str
    path: str
    name: str
    headers: dict[str, str]
    body: bytes
    client_port: int


@attrs.define
class Reply:
    status: int = 201
    headers: dict[str, str] = attrs.Factory(dict)
    body: bytes = b""
    #: Keep the request (it is recorded) but close the connection without any answer.
    drop: bool = False


def tls_server_context(folder: Path, *names: str) -> tuple[ssl.SSLContext, Path]:
    """A server context with a new self-signed certificate for ``names`` (DNS names or IP
    addresses), and the certificate's file for clients to trust (``verify=``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "push-service.pem", folder / "push-service.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


class FakePushService:
    """An HTTP push service on 127.0.0.1 (an ephemeral port), with scripted replies."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        #: The server names (SNI) TLS clients asked for, in order.
        self.sni: list[str | None] = []
        self.requests: list[PushRequest] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0

    # --- lifecycle ---

    def start(self) -> FakePushService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse can be observed

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                reply = service._record(self, body)
                if reply.drop:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            # A client following a redirect may come back with any method: record them all.
            do_GET = do_PUT = do_DELETE = do_PATCH = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self.tls.sni_callback = lambda _sock, name, _context: self.sni.append(name)
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakePushService:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the service first"
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    # --- subscriptions and scripts ---

    def endpoint(self, name: str) -> str:
        return f"{self.url}/push/{name}"

    def subscribe(self, name: str | None = None) -> BrowserSubscription:
        """A new browser subscription whose endpoint is on this service."""
        with self._lock:
            self._counter += 1
            name = name or f"sub{self._counter}"
        return BrowserSubscription(self.endpoint(name))

    def script(self, subscription: BrowserSubscription | str, *replies: Reply) -> None:
        """Answer the next requests to this subscription with ``replies``, then 201."""
        name = self._name_of(subscription)
        with self._lock:
            self._scripts.setdefault(name, deque()).extend(replies)

    def requests_for(self, subscription: BrowserSubscription | str) -> list[PushRequest]:
        name = self._name_of(subscription)
        with self._lock:
            return [r for r in self.requests if r.name == name]

    @staticmethod
    def _name_of(subscription: BrowserSubscription | str) -> str:
        endpoint = (
            subscription.endpoint if isinstance(subscription, BrowserSubscription) else subscription
        )
        return endpoint.rstrip("/").rsplit("/", 1)[-1]

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes) -> Reply:
        path = handler.path
        name = path.rstrip("/").rsplit("/", 1)[-1] if path.startswith("/push/") else ""
        request = PushRequest(
            method=handler.command,
            path=path,
            name=name,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            client_port=handler.client_address[1],
        )
        with self._lock:
            self.requests.append(request)
            script = self._scripts.get(name)
            if not name:
                return Reply(404, body=b"no such subscription")
            if script:
                return script.popleft()
        return Reply(201, {"Location": f"{self.url}/message/{len(self.requests)}"})
