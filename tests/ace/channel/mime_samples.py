"""Sample emails and ways to compare them, shared by the MIME and SMTP pipelining tests
(imported as ``mime_samples``)."""

from __future__ import annotations

import email
import email.policy

from django.core.mail import EmailMultiAlternatives


def alternative_email(**overrides) -> EmailMultiAlternatives:
    fields = {
        "subject": "Ada, 5 new courses picked for you",
        "body": "Hello Ada,\n\nHere are this week's courses:\n- one\n- two\n",
        "from_email": "Bench Learning <news@example.org>",
        "to": ["ada@example.org"],
        "headers": {
            "List-Unsubscribe": "<https://example.org/unsubscribe/1/token>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
    html = overrides.pop("html", "<p>Hello <b>Ada</b></p>\n<ul><li>one</li><li>two</li></ul>")
    fields.update(overrides)
    mail = EmailMultiAlternatives(**fields)
    if html is not None:
        mail.attach_alternative(html, "text/html")
    return mail


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def parts(message) -> list[tuple[str, str]]:
    leaves = message.iter_parts() if message.is_multipart() else [message]
    return [(p.get_content_type(), p.get_content().replace("\r\n", "\n")) for p in leaves]


def header_view(message) -> list[tuple[str, str]]:
    """Every header but the per-message ones (Date, Message-ID, the boundary), unfolded.

    Django folds long encoded headers after "Name:", which a parser reads back with a leading
    space; the value is the same."""
    skip = {"date", "message-id", "content-type"}
    return [(k, str(v).strip()) for k, v in message.items() if k.lower() not in skip]
