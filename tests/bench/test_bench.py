"""The benchmark's own pieces: the email it sends and the profile's stage timer."""

from __future__ import annotations

import copy

import pytest

from ace.channel.django_email import DjangoEmailChannel
from ace.channel.mime import message_bytes
from ace.presentation import render
from bench import run_benchmark, workload
from bench.run_benchmark import StageTimer
from bench.stages import _messages


@pytest.fixture
def bench_templates(settings):
    templates = copy.deepcopy(settings.TEMPLATES)
    templates[0]["DIRS"] = [workload.TEMPLATES_DIR, *templates[0]["DIRS"]]
    templates[0]["OPTIONS"]["loaders"] = [
        ("django.template.loaders.cached.Loader", ["django.template.loaders.filesystem.Loader"])
    ]
    settings.TEMPLATES = templates
    settings.DEFAULT_FROM_EMAIL = workload.FROM_EMAIL


@pytest.mark.usefixtures("bench_templates")
def test_the_benchmark_email_is_the_5kb_multipart_of_the_issue():
    import email
    import email.policy

    channel = DjangoEmailChannel()
    (message,) = _messages(1)
    data = message_bytes(channel.build_email(message, render(channel, message)))
    assert 4500 <= len(data) <= 6000
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["Subject"] == "Learner0, 5 new courses picked for you"  # blocktrans count
    assert parsed["From"] == "Bench Learning <news@bench.example.org>"  # from_name.txt
    text = parsed.get_body(("plain",)).get_content()
    html = parsed.get_body(("html",)).get_content()
    for item in workload.CAMPAIGN_CONTEXT["items"]:  # the loop, in both parts
        assert item["title"] in text and item["title"] in html
    assert html.count('class="cta"') == 5
    assert "Starts 1 June 2026 &middot; 6 hours a week" in html  # blocktrans with
    assert "{%" not in text + html and "Unsubscribe" in html


class FakeClock:
    """Stands in for the ``time`` module the stage timer reads: time passes only when a test
    says so, so the figures are exact on a busy machine."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    process_time = perf_counter

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(run_benchmark, "time", fake)
    return fake


def test_stage_timer_counts_nested_stages_once(clock):
    timer = StageTimer()
    with timer.stage("outer"):
        clock.sleep(0.02)
        with timer.stage("inner"):
            clock.sleep(0.03)
    assert timer.wall["outer"] == pytest.approx(0.02)
    assert timer.wall["inner"] == pytest.approx(0.03)
    assert timer.cpu["outer"] == pytest.approx(0.02)


def test_stage_timer_wraps_functions_and_context_managers(clock):
    import contextlib

    class Owner:
        @staticmethod
        def work(x):
            clock.sleep(0.01)
            return x * 2

        @staticmethod
        @contextlib.contextmanager
        def prefetch():
            clock.sleep(0.01)
            yield "ready"
            clock.sleep(0.01)

    timer = StageTimer()
    timer.wrap(Owner, "work", "work")
    timer.wrap_context_manager(Owner, "prefetch", "prefetch")
    assert Owner.work(21) == 42
    with Owner.prefetch() as value:
        assert value == "ready"
        clock.sleep(0.03)  # the body is not the context manager's time
    assert timer.wall["work"] == pytest.approx(0.01)
    assert timer.wall["prefetch"] == pytest.approx(0.02)
