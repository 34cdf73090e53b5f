"""Tests for ace.monitoring."""

from __future__ import annotations

from ace import monitoring


def test_report_without_new_relic_is_a_no_op(monkeypatch):
    monkeypatch.setattr(monitoring, "_newrelic_agent", None)
    assert monitoring.report("key", "value") is None
    assert monitoring.report_to_newrelic("key", "value") is None


def test_report_goes_to_new_relic_when_installed(monkeypatch):
    calls = []

    class FakeAgent:
        @staticmethod
        def add_custom_attribute(key, value):
            calls.append((key, value))

    monkeypatch.setattr(monitoring, "_newrelic_agent", FakeAgent)
    monitoring.report("message_name", "app.welcome")
    assert calls == [("message_name", "app.welcome")]


def test_older_new_relic_agents_use_add_custom_parameter(monkeypatch):
    calls = []

    class OldAgent:
        @staticmethod
        def add_custom_parameter(key, value):
            calls.append((key, value))

    monkeypatch.setattr(monitoring, "_newrelic_agent", OldAgent)
    monitoring.report_to_newrelic("k", 1)
    assert calls == [("k", 1)]
