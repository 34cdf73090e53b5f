"""``require_service``: a missing service skips a test, or fails it when REQUIRE_SERVICES=1."""

from __future__ import annotations

import project_helpers
import pytest


def missing() -> None:
    raise ConnectionRefusedError("connection refused")


def test_missing_service_skips_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(project_helpers, "REQUIRE_SERVICES", False)
    with pytest.raises(pytest.skip.Exception, match="Redis is not available: connection refused"):
        project_helpers.require_service("Redis", missing)


def test_missing_service_fails_when_services_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(project_helpers, "REQUIRE_SERVICES", True)
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_SERVICES=1 makes this a failure"):
        project_helpers.require_service("Redis", missing)


def test_available_service_passes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(project_helpers, "REQUIRE_SERVICES", True)
    project_helpers.require_service("Redis", lambda: True)


def test_ci_requires_services() -> None:
    ci = (project_helpers.ROOT / ".ci" / "run").read_text()
    assert "export REQUIRE_SERVICES=1" in ci
    assert "python3 scripts/test\n" in ci  # the README's command, exactly


def test_redis_fixture_answers(redis_service: str) -> None:
    """Under CI this proves Redis is really there; elsewhere it skips when it is not."""
    import redis

    client = redis.Redis.from_url(redis_service, socket_connect_timeout=2)
    try:
        assert client.ping() is True
    finally:
        client.close()
