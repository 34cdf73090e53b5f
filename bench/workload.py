"""The benchmark's email: template location, shared campaign context and per-recipient context.

Plain Python with no imports from the project, so the reference run (``reference_send.py``, in its
own virtual environment with ``edx-ace`` from PyPI) renders exactly the same email.
"""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = BENCH_DIR / "templates"
APP_LABEL = "bench"
MESSAGE_NAME = "benchmail"
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
        "unsubscribe_url": f"https://learning.bench.example.org/unsubscribe/{index:08d}/signed-token-abcdef",
    }
