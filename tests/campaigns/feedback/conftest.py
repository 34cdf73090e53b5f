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


def _dovecot_config(folder: Path, port: int) -> str:
    if os.geteuid() == 0:
        # Dovecot drops privileges to its own users; mail belongs to "nobody".
        uid, gid, users = 65534, 65534, ""
    else:
        me = pwd.getpwuid(os.geteuid()).pw_name
        uid, gid = os.geteuid(), os.getegid()
        users = f"default_internal_user = {me}\ndefault_login_user = {me}\n"
    return f"""
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
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
    require_service("Dovecot (apt-get install dovecot-imapd)", lambda: _check_dovecot())
    folder = Path(tempfile.mkdtemp(prefix="ace-dovecot-"))
    folder.chmod(0o755)  # dovecot's unprivileged processes read their sockets here
    (folder / "mail").mkdir()
    if os.geteuid() == 0:
        os.chown(folder / "mail", 65534, 65534)
    user, password = "bounces", "mailbox-pass"
    (folder / "passwd").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
    (folder / "passwd").chmod(0o644)
    port = _free_port()
    (folder / "dovecot.conf").write_text(_dovecot_config(folder, port))
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(folder / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = ImapServer("127.0.0.1", port, user, password, folder)
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
