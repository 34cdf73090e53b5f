"""``ace.send`` called once per message, as Open edX code does, against the reference, side by side.

Both libraries send the benchmark email N times over SMTP to the same ``smtp-sink`` on
loopback, each in its own process and virtual environment (ours: ``.venv``; the reference:
``bench/.venv-ref``, see ``bench/setup_reference.sh``), reference first, then ours, then the
reference again, so a drift of the machine's speed shows. No policies, no database.

    .venv/bin/python -m bench.single_send --count 2000
    .venv/bin/python -m bench.single_send --count 2000 --ours-only   # no reference venv needed
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import workload  # noqa: E402

REFERENCE_PYTHON = ROOT / "bench" / ".venv-ref" / "bin" / "python"


def configure(*, host: str, port: int) -> None:
    """The reference script's settings with this project's ``ace`` instead of ``edx_ace``."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="single-send-benchmark",
        INSTALLED_APPS=["ace"],
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
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
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


def build_message(index: int, send_uuid: uuid.UUID):
    """The reference script's message, built with our classes."""
    from ace.message import Message
    from ace.recipient import Recipient

    context = {**workload.CAMPAIGN_CONTEXT, **workload.recipient_context(index)}
    return Message(
        app_label=workload.APP_LABEL,
        name=workload.MESSAGE_NAME,
        recipient=Recipient(lms_user_id=index, email_address=workload.recipient_email(index)),
        language=workload.LANGUAGE,
        context=context,
        send_uuid=send_uuid,
        options={
            "headers": {
                "List-Unsubscribe": f"<{context['unsubscribe_url']}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        },
    )


def run_ours(count: int, warmup: int) -> dict:
    """``ace.send`` per message in this process; every message must come back SENT."""
    from ace import ace

    send_uuid = uuid.uuid4()
    for index in range(warmup):
        ace.send(build_message(index, send_uuid))
    start = time.perf_counter()
    for index in range(count):
        outcomes = ace.send(build_message(index, send_uuid))
        if not all(outcome.ok for outcome in outcomes):
            raise SystemExit(f"message {index} was not sent: {outcomes}")
    seconds = time.perf_counter() - start
    return {
        "messages": count,
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 1),
    }


def _child(command: list[str]) -> dict:
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--ours-only", action="store_true")
    parser.add_argument("--smtp", help="host:port: run ours in this process against it (internal)")
    args = parser.parse_args(argv)

    if args.smtp:  # the child process that measures this library
        host, _, port = args.smtp.rpartition(":")
        configure(host=host, port=int(port))
        print(json.dumps(run_ours(args.count, args.warmup)))
        return

    from bench.run_benchmark import Sink

    sink = Sink()
    target = f"127.0.0.1:{sink.port}"
    counts = ["--count", str(args.count), "--warmup", str(args.warmup)]
    reference = [str(REFERENCE_PYTHON), "bench/reference_send.py", *counts, "--smtp", target]
    ours = [sys.executable, "-m", "bench.single_send", *counts, "--smtp", target]
    try:
        before = None if args.ours_only else _child(reference)
        mine = _child(ours)
        after = None if args.ours_only else _child(reference)
    finally:
        sink.stop()
    print(
        f"ours:      {mine['per_second']:8.1f} messages/s ({args.count} ace.send calls over SMTP)"
    )
    if before and after:
        ref = (before["per_second"] + after["per_second"]) / 2
        print(
            f"reference: {ref:8.1f} messages/s (before {before['per_second']}, after "
            f"{after['per_second']}); ratio {mine['per_second'] / ref:.2f}x"
        )


if __name__ == "__main__":
    main()
