"""The benchmark's emails: template location, shared campaign context and per-recipient context.

Two emails share everything but their item links: ``typical`` (``benchmail``) reads only the
campaign's context inside its loop, ``worst`` (``benchmail_worst``) puts a per-recipient tracking
parameter (the recipient's ``username``) in every item link, so the loop cannot be rendered once
per batch.

Plain Python with no imports from the project, so the reference run (``reference_send.py``, in its
own virtual environment with ``edx-ace`` from PyPI) renders exactly the same email.
"""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = BENCH_DIR / "templates"
APP_LABEL = "bench"
MESSAGE_NAME = "benchmail"
#: Email name -> (message name, code path of its MessageType); ``MESSAGE_NAME`` is ``typical``.
EMAILS = {
    "typical": (MESSAGE_NAME, "bench.message_types.BenchMail"),
    "worst": ("benchmail_worst", "bench.message_types.BenchMailWorst"),
}
FROM_EMAIL = "Bench Learning <news@bench.example.org>"
LANGUAGE = "en"

_SUMMARY = "Weekly projects, short videos and graded exercises, with feedback from staff."

# Shared by every message of the campaign (Campaign.context).
CAMPAIGN_CONTEXT: dict = {
    "platform_name": "Bench",
    "campaign_slug": "weekly-picks",
    "items": [
        {
            "title": title,
            "summary": _SUMMARY,
            "url": f"https://learning.bench.example.org/courses/{code}/about",
            "start": "1 June 2026",
            "effort": effort,
        }
        for title, code, effort in [
            ("Data Structures and Algorithms", "DSA101", 6),
            ("Introduction to Machine Learning", "ML110", 8),
            ("Writing for the Web", "WRT120", 3),
            ("Financial Accounting Basics", "ACC101", 4),
            ("Modern Web Development with Django", "WEB210", 5),
        ]
    ],
}


def recipient_email(index: int) -> str:
    """The address of seeded user number ``index`` (the same in every run)."""
    return f"learner{index}@bench.example.org"


def recipient_context(index: int) -> dict:
    """Per-recipient context (a fresh dict each call), like a resolver provides."""
    return {
        "first_name": f"Learner{index}",
        "username": f"learner{index}",
        "unsubscribe_url": f"https://learning.bench.example.org/unsubscribe/{index:08d}/signed-token-abcdef",
    }
