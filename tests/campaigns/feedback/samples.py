"""Bounce messages as mail servers send them, built in the tests (nothing downloaded): RFC 3464
delivery status notifications, an ARF complaint, and the non-standard formats of qmail and Exim.
"""

from __future__ import annotations

import uuid
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid

RETURN_PATH = "bounces@campaigns.example.org"


def original_headers(
    *, to: str = "ada@example.net", message_uuid: uuid.UUID | None = None, message_id: str = ""
) -> str:
    """The headers of the message we sent, as a bounce returns them."""
    lines = [
        "From: Campaigns <noreply@campaigns.example.org>",
        f"To: {to}",
        "Subject: Hello Ada",
        f"Message-ID: {message_id or make_msgid(domain='campaigns.example.org')}",
        "Date: Tue, 01 Dec 2026 10:00:00 +0000",
    ]
    if message_uuid is not None:
        lines.append(f"X-ACE-Message-UUID: {message_uuid}")
    return "\r\n".join(lines) + "\r\n"


def dsn(
    *,
    recipients: list[dict],
    headers: str | None = None,
    returned: str = "headers",
    to: str = RETURN_PATH,
    reporting_mta: str = "dns; mx.example.net",
) -> bytes:
    """An RFC 3464 report: ``recipients`` are dicts of per-recipient fields
    (``Final-Recipient``, ``Action``, ``Status``, ``Diagnostic-Code``...); ``returned`` is
    ``headers`` (text/rfc822-headers), ``message`` (message/rfc822) or ``none``."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example.net>"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Message-ID"] = make_msgid(domain="mx.example.net")
    report["Date"] = formatdate(localtime=False)
    report.attach(
        MIMEText(
            "I'm sorry to have to inform you that your message could not\n"
            "be delivered to one or more recipients.\n"
        )
    )
    blocks = [{"Reporting-MTA": reporting_mta, "Arrival-Date": formatdate()}, *recipients]
    status = MIMEBase("message", "delivery-status")
    # The generator writes this type as header blocks (a list of messages).
    status.set_payload([_block(fields) for fields in blocks])
    report.attach(status)
    headers = headers if headers is not None else original_headers()
    if returned == "headers":
        part = MIMEBase("text", "rfc822-headers")
        part.set_payload(headers)
        report.attach(part)
    elif returned == "message":
        inner = Message()
        for line in headers.strip().splitlines():
            name, value = line.split(":", 1)
            inner[name] = value.strip()
        inner.set_payload("Dear Ada, hi.\n")
        report.attach(MIMEMessage(inner))
    return report.as_bytes()


def _block(fields: dict) -> Message:
    block = Message()
    for name, value in fields.items():
        block[name] = value
    return block


def failed(address: str, status: str = "5.1.1", diagnostic: str | None = None) -> dict:
    return {
        "Final-Recipient": f"rfc822; {address}",
        "Original-Recipient": f"rfc822;{address}",
        "Action": "failed",
        "Status": status,
        "Remote-MTA": "dns; mx.example.net",
        "Diagnostic-Code": diagnostic
        if diagnostic is not None
        else f"smtp; {'550' if status.startswith('5') else '452'} {status} mailbox trouble",
    }


def arf(*, rcpt: str = "ada@example.net", headers: str | None = None, kind: str = "abuse") -> bytes:
    """An RFC 5965 spam complaint from a mailbox provider's feedback loop."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "feedback@fbl.example.net"
    report["To"] = RETURN_PATH
    report["Subject"] = "Abuse report"
    report["Message-ID"] = make_msgid(domain="fbl.example.net")
    report.attach(MIMEText("This is an email abuse report.\n"))
    fields = MIMEBase("message", "feedback-report")
    fields.set_payload(
        f"Feedback-Type: {kind}\nUser-Agent: ExampleFBL/1.0\nVersion: 1\n"
        f"Original-Rcpt-To: {rcpt}\nArrival-Date: {formatdate()}\n"
    )
    report.attach(fields)
    part = MIMEBase("text", "rfc822-headers")
    part.set_payload(headers if headers is not None else original_headers(to=rcpt))
    report.attach(part)
    return report.as_bytes()


def qmail(address: str, reply: str, headers: str) -> bytes:
    """qmail's plain-text "failure notice"."""
    message = EmailMessage()
    message["From"] = "MAILER-DAEMON@mx.example.net"
    message["To"] = RETURN_PATH
    message["Subject"] = "failure notice"
    message.set_content(
        "Hi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        f"<{address}>:\n192.0.2.1 does not like recipient.\nRemote host said: {reply}\n"
        "Giving up on 192.0.2.1.\n\n"
        "--- Below this line is a copy of the message.\n\n" + headers.replace("\r\n", "\n")
    )
    return message.as_bytes()


def exim(address: str, reply: str, headers: str) -> bytes:
    """Exim's plain-text bounce, with its X-Failed-Recipients header."""
    message = EmailMessage()
    message["From"] = "Mail Delivery System <Mailer-Daemon@mx.example.net>"
    message["To"] = RETURN_PATH
    message["Subject"] = "Mail delivery failed: returning message to sender"
    message["X-Failed-Recipients"] = address
    message["Auto-Submitted"] = "auto-replied"
    message.set_content(
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n\n"
        f"  {address}\n    host mx.example.net [192.0.2.1]\n"
        f"    SMTP error from remote mail server after RCPT TO:<{address}>:\n    {reply}\n\n"
        "------ This is a copy of the message, including all the headers. ------\n\n"
        + headers.replace("\r\n", "\n")
    )
    return message.as_bytes()


def global_dsn(address: str, status: str = "5.1.1") -> bytes:
    """An RFC 6533 report for an internationalized address (UTF-8 in the status part)."""
    return (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        f"To: {RETURN_PATH}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n--b1\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
        "--b1\r\nContent-Type: message/global-delivery-status\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: utf-8; {address}\r\nAction: failed\r\nStatus: {status}\r\n"
        "\r\n--b1--\r\n"
    ).encode()
