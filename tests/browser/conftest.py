"""Browser test fixtures: one headless Chromium per session against pytest-django's live_server.

The live server runs in this process (a thread), so ``settings`` changes and
``django.core.mail.outbox`` are shared with it; its database access is transactional.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.template import engines
from project_helpers import require_service

from ace.utils import once
from campaigns import template_loader
from campaigns.permissions import setup_groups
from tests.browser.admin_browser import AdminBrowser, check_chromium, start_chromium


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory):
    """The WebDriver, started once (≈1 s); skipped without Chromium unless REQUIRE_SERVICES=1."""
    require_service("Chromium (headless) and chromedriver", check_chromium)
    driver = start_chromium(str(tmp_path_factory.mktemp("chromium-profile")))
    yield driver
    driver.quit()


def _reset_caches() -> None:
    once.reset_all()
    for loader in engines["django"].engine.template_loaders:
        if isinstance(loader, template_loader.DatabaseLoader):
            loader.reset()


@pytest.fixture
def site(settings, transactional_db, monkeypatch) -> Iterator[None]:
    """What the site needs for these flows: email by Django's locmem backend, the role groups.

    The groups come from a data migration, which a transactional test's flush wipes; making
    them again (idempotent) keeps these tests independent of what ran before. The live server
    closes its database connection after each request (CONN_MAX_AGE 0): its threads live as
    long as the browser's keep-alive sockets, and an idle connection left in one of them would
    stop the test database from being dropped at the end of the session.
    """
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    settings.ACE_ENABLED_CHANNELS = ["django_email"]
    settings.ACE_CHANNEL_DEFAULT_EMAIL = "django_email"
    settings.ACE_CHANNEL_TRANSACTIONAL_EMAIL = "django_email"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "Campaigns <noreply@example.org>"
    setup_groups(Group, Permission)
    _reset_caches()
    yield
    _reset_caches()


@pytest.fixture
def browser(chromium, live_server, site) -> Iterator[AdminBrowser]:
    """The shared Chromium pointed at the live server, logged out before and after the test."""
    chromium.delete_all_cookies()
    yield AdminBrowser(driver=chromium, base_url=live_server.url)
    chromium.delete_all_cookies()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On a failed browser test, add the page's address and visible text to the report."""
    report = yield
    if report.when == "call" and report.failed and "browser" in getattr(item, "funcargs", {}):
        page: AdminBrowser = item.funcargs["browser"]
        try:
            details = f"url: {page.driver.current_url}\n\n{page.page_text()[:4000]}"
        except Exception as exc:  # the browser itself may be what failed
            details = f"(could not read the page: {exc})"
        report.sections.append(("browser page at failure", details))
    return report
