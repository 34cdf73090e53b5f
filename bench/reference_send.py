"""Send the benchmark email N times through the reference ``edx-ace`` package from PyPI.

Runs in its own virtual environment (``bench/.venv-ref``, see ``bench/setup_reference.sh``) so the
reference library never meets ours. Like an Open edX caller it builds one ``Message`` per
recipient and calls ``edx_ace.ace.send(msg)``; the reference ``django_email`` channel then sends
through Django's email backend, which opens one SMTP connection per message.

Prints one JSON line: ``{"messages": N, "seconds": ..., "per_second": ..., ...}``.

    bench/.venv-ref/bin/python bench/reference_send.py --count 2000 --smtp 127.0.0.1:2525
    bench/.venv-ref/bin/python bench/reference_send.py --count 2000 --backend locmem
    bench/.venv-ref/bin/python bench/reference_send.py --count 2000 --email worst
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import workload

BACKENDS = {
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
}


def configure(*, backend: str, host: str, port: int) -> None:
    """Minimal Django settings for edx-ace: no policies, the django_email channel, cached
    templates from ``bench/templates`` (the same files our benchmark renders)."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="reference-benchmark",
        INSTALLED_APPS=["edx_ace"],
        USE_I18N=True,
        USE_TZ=True,
        LANGUAGE_CODE=workload.LANGUAGE,
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [str(workload.TEMPLATES_DIR)],
                "APP_DIRS": False,
                "OPTIONS": {
                    "loaders": [
                        (
                            "django.template.loaders.cached.Loader",
                            ["django.template.loaders.filesystem.Loader"],
                        )
                    ]
                },
            }
        ],
        EMAIL_BACKEND=BACKENDS[backend],
        EMAIL_HOST=host,
        EMAIL_PORT=port,
        EMAIL_TIMEOUT=30,
        DEFAULT_FROM_EMAIL=workload.FROM_EMAIL,
        ACE_ENABLED_CHANNELS=["django_email"],
        ACE_ENABLED_POLICIES=[],
        ACE_CHANNEL_DEFAULT_EMAIL="django_email",
        ACE_CHANNEL_TRANSACTIONAL_EMAIL="django_email",
        LOGGING_CONFIG=None,
    )
    django.setup()


def build_message(index: int, send_uuid: uuid.UUID, name: str = workload.MESSAGE_NAME):
    """One message per recipient with a fresh context, as an Open edX resolver builds it."""
    from edx_ace.message import Message
    from edx_ace.recipient import Recipient

    context = {**workload.CAMPAIGN_CONTEXT, **workload.recipient_context(index)}
    return Message(
        app_label=workload.APP_LABEL,
        name=name,
        recipient=Recipient(lms_user_id=index, email_address=workload.recipient_email(index)),
        language=workload.LANGUAGE,
        context=context,
        send_uuid=send_uuid,
        headers={
            "List-Unsubscribe": f"<{context['unsubscribe_url']}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


def run(count: int, warmup: int, name: str = workload.MESSAGE_NAME) -> dict:
    """Send ``warmup`` untimed messages (template compilation, plugin loading), then ``count``
    messages of the email ``name``."""
    from django.core import mail
    from edx_ace import ace

    send_uuid = uuid.uuid4()
    for index in range(warmup):
        ace.send(build_message(index, send_uuid, name))
    outbox = getattr(mail, "outbox", None)
    start = time.perf_counter()
    for index in range(count):
        ace.send(build_message(index, send_uuid, name))
        if outbox is not None and len(outbox) > 1000:
            outbox.clear()
    seconds = time.perf_counter() - start
    return {
        "messages": count,
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="smtp")
    parser.add_argument("--smtp", default="127.0.0.1:2525", help="host:port of the SMTP sink")
    parser.add_argument("--email", choices=sorted(workload.EMAILS), default="typical")
    args = parser.parse_args(argv)
    host, _, port = args.smtp.rpartition(":")
    configure(backend=args.backend, host=host, port=int(port))

    import edx_ace

    result = run(args.count, args.warmup, workload.EMAILS[args.email][0])
    result.update(
        {
            "library": f"edx-ace {getattr(edx_ace, '__version__', '?')}",
            "backend": args.backend,
            "email": args.email,
        }
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
