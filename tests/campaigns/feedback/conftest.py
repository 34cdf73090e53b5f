"""Fixtures of the delivery feedback tests: webhook settings, sent deliveries, and a real IMAP
server (Dovecot) on loopback with its configuration in a temporary folder."""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from django.urls import clear_url_caches

from tests.campaigns.factories import DeliveryFactory
from tests.campaigns.plugin_caches import reset_plugin_caches

WEBHOOK_USER, WEBHOOK_PASSWORD = "esp", "s3cret-webhook"
DOVECOT = os.environ.get("DOVECOT_PATH", "/usr/sbin/dovecot")
POP3 = "/usr/lib/dovecot/pop3"


@pytest.fixture
def webhook_settings(settings) -> Iterator:
    """anymail's basic auth secret set, as the README says to."""
    settings.ANYMAIL = {"WEBHOOK_SECRET": f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}"}
    clear_url_caches()
    yield settings
    clear_url_caches()


@pytest.fixture
def fresh_policies() -> Iterator[None]:
    reset_plugin_caches()
    yield
    reset_plugin_caches()


@pytest.fixture
def sent_delivery(db):
    """A sent email delivery to ada@example.net with a known message uuid."""
    return DeliveryFactory(email="ada@example.net", message_uuid=uuid.uuid4())


# A real IMAP server -------------------------------------------------------------------------


@attrs.frozen
class ImapServer:
    host: str
    port: int
    user: str
    password: str
    folder: Path
    tls_port: int = 0
    pop3_port: int = 0  # 0: no dovecot-pop3d

    @property
    def cafile(self) -> str:
        return str(self.folder / "cert.pem")

    @property
    def url(self) -> str:
        return f"imap://{self.user}:{self.password}@{self.host}:{self.port}/INBOX"

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4(self.host, self.port, timeout=10)
        client.login(self.user, self.password)
        client.select("INBOX")
        return client

    def deliver(self, *messages: bytes) -> None:
        client = self.client()
        try:
            for message in messages:
                typ, data = client.append("INBOX", None, None, message)
                assert typ == "OK", data
        finally:
            client.logout()

    def flags(self) -> list[tuple[int, str]]:
        """(uid, flags) of every message in INBOX."""
        client = self.client()
        try:
            _typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
            found = []
            for line in data:
                if not line:
                    continue
                text = line.decode()
                uid = int(text.split("UID ")[1].split()[0].rstrip(")"))
                found.append((uid, text.split("FLAGS (")[1].split(")")[0]))
            return sorted(found)
        finally:
            client.logout()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (IP SAN) and its key, made here (nothing downloaded)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _dovecot_config(folder: Path, port: int, tls_port: int = 0, pop3_port: int = 0) -> str:
    if os.geteuid() == 0:
        # Dovecot drops privileges to its own users; mail belongs to "nobody".
        uid, gid, users = 65534, 65534, ""
    else:
        me = pwd.getpwuid(os.geteuid()).pw_name
        uid, gid = os.geteuid(), os.getegid()
        users = f"default_internal_user = {me}\ndefault_login_user = {me}\n"
    protocols = "imap pop3" if pop3_port else "imap"
    tls = (
        f"ssl = yes\nssl_cert = <{folder}/cert.pem\nssl_key = <{folder}/key.pem"
        if tls_port
        else "ssl = no"
    )
    return f"""
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = {protocols}
listen = 127.0.0.1
{tls}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{folder}/mail/%u
first_valid_uid = 1
{users}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={folder}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


@pytest.fixture
def imap_server(require_service) -> Iterator[ImapServer]:
    """Dovecot on 127.0.0.1 (a free high port), plaintext login allowed, one user; skipped
    (or failed under REQUIRE_SERVICES=1) without ``dovecot-imapd``."""
    yield from _dovecot(require_service, tls=False)


@pytest.fixture
def imap_tls_server(require_service) -> Iterator[ImapServer]:
    """The same with TLS: STARTTLS on the plain port, implicit TLS on ``tls_port``, a
    self-signed certificate for 127.0.0.1 (``cafile``)."""
    yield from _dovecot(require_service, tls=True)


def _dovecot(require_service, *, tls: bool) -> Iterator[ImapServer]:
    require_service("Dovecot (apt-get install dovecot-imapd)", lambda: _check_dovecot())
    folder = Path(tempfile.mkdtemp(prefix="ace-dovecot-"))
    folder.chmod(0o755)  # dovecot's unprivileged processes read their sockets here
    (folder / "mail").mkdir()
    if os.geteuid() == 0:
        os.chown(folder / "mail", 65534, 65534)
    user, password = "bounces", "mailbox-pass"
    (folder / "passwd").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
    (folder / "passwd").chmod(0o644)
    port, tls_port = _free_port(), _free_port() if tls else 0
    pop3_port = _free_port() if Path(POP3).exists() else 0  # with dovecot-pop3d
    if tls:
        _self_signed(folder)
    (folder / "dovecot.conf").write_text(_dovecot_config(folder, port, tls_port, pop3_port))
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(folder / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = ImapServer("127.0.0.1", port, user, password, folder, tls_port, pop3_port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                server.client().logout()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (
                        (folder / "dovecot.log").read_text()
                        if (folder / "dovecot.log").exists()
                        else ""
                    )
                    pytest.fail(f"dovecot did not start: {process.stderr.read()!r} {log}")
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _check_dovecot() -> None:
    if not Path(DOVECOT).exists():
        raise RuntimeError(f"{DOVECOT} not found")
