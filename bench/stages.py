"""Micro-benchmarks of one stage at a time, per message, in one process (``--stages``).

They show what each stage costs on its own and what the fast path changes: rendering the five
templates (looked up once, translation active once, as ``BatchSender`` does; in full, then with
the shared parts rendered once per batch by :mod:`ace.batch_render`), building the MIME bytes
(Django's ``message().as_bytes()`` against :mod:`ace.channel.mime`), and sending
pre-built bytes (``smtplib`` on one connection, a new connection per message as the reference
does, and :class:`~ace.channel.smtp_pipelining.PipelinedSMTPTransport`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench import workload


def _per_message(count: int, action: Callable[[int], Any]) -> float:
    """Microseconds per call of ``action(i)`` over ``count`` calls (after a short warm-up)."""
    for index in range(min(50, count)):
        action(index)
    started = time.perf_counter()
    for index in range(count):
        action(index)
    return (time.perf_counter() - started) / count * 1e6


def _messages(count: int) -> list:
    from ace.recipient import Recipient
    from bench.message_types import BenchMail

    msg_type = BenchMail(context=workload.CAMPAIGN_CONTEXT)
    return [
        msg_type.personalize(
            Recipient(lms_user_id=i, email_address=workload.recipient_email(i)),
            workload.LANGUAGE,
            workload.recipient_context(i),
        )
        for i in range(count)
    ]


def run_stages(count: int = 2000) -> dict[str, float]:
    """Per-message microseconds of each stage (needs Django set up with ``bench.settings``)."""
    from django.core.mail import get_connection
    from django.utils import translation

    from ace.batch_render import RenderBatch
    from ace.channel.django_email import DjangoEmailChannel, django_smtp_connector
    from ace.channel.mime import envelope, message_bytes
    from ace.channel.smtp_pipelining import Envelope, PipelinedSMTPTransport
    from ace.presentation import get_renderer

    channel = DjangoEmailChannel()
    messages = _messages(count)
    renderer = get_renderer(channel.channel_type)
    templates = renderer.get_templates(channel, messages[0])
    results: dict[str, float] = {}
    with translation.override(workload.LANGUAGE):
        results["render (5 templates)"] = _per_message(
            count, lambda i: renderer.render_templates(templates, channel, messages[i])
        )
        batch = RenderBatch(messages).templates(templates, channel, messages[0])  # as BatchSender
        results["render, shared parts once per batch"] = _per_message(
            count, lambda i: renderer.render_templates(batch, channel, messages[i])
        )
        rendered = [renderer.render_templates(templates, channel, m) for m in messages]
    emails = [channel.build_email(m, r) for m, r in zip(messages, rendered, strict=True)]
    results["build EmailMultiAlternatives"] = _per_message(
        count, lambda i: channel.build_email(messages[i], rendered[i])
    )
    results["MIME: Django message().as_bytes()"] = _per_message(
        count, lambda i: emails[i].message().as_bytes(linesep="\r\n")
    )
    results["MIME: ace.channel.mime.message_bytes()"] = _per_message(
        count, lambda i: message_bytes(emails[i])
    )
    prebuilt = [Envelope(*envelope(e), message_bytes(e)) for e in emails]
    results["message size (bytes)"] = float(len(prebuilt[0].data))

    backend = get_connection(fail_silently=False)
    backend.open()
    smtp = backend.connection
    results["SMTP: smtplib, one connection"] = _per_message(
        count, lambda i: smtp.sendmail(prebuilt[i].sender, prebuilt[i].recipients, prebuilt[i].data)
    )
    backend.close()

    def new_connection_each(i: int) -> None:
        one = get_connection(fail_silently=False)
        one.open()
        one.connection.sendmail(prebuilt[i].sender, prebuilt[i].recipients, prebuilt[i].data)
        one.close()

    results["SMTP: smtplib, new connection per message"] = _per_message(
        min(count, 1000), new_connection_each
    )
    for connections in (1, 4):
        with PipelinedSMTPTransport(django_smtp_connector(), connections=connections) as fast:
            fast.send_many(prebuilt[:50])
            started = time.perf_counter()
            outcome = fast.send_many(prebuilt)
            seconds = time.perf_counter() - started
        assert not any(outcome), outcome[:3]
        label = f"SMTP: pipelined, {connections} connection{'s' if connections > 1 else ''}"
        results[label] = seconds / count * 1e6
    return {key: round(value, 1) for key, value in results.items()}
