"""The Content-Security-Policy in Chromium: the admin's pages work under it, with no violation
reported (securitypolicyviolation events, collected by a script the browser itself injects)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By

from tests.browser.admin_browser import AdminBrowser
from tests.campaigns import factories as f

COLLECT = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") +
    " " + (e.sample || ""));
});
"""

PAGES = [
    "/admin/",
    "/admin/campaigns/campaign/",
    "/admin/campaigns/campaign/add/",
    "/admin/campaigns/messagetypedefinition/add/",
    "/admin/campaigns/recipientlistentry/",
    "/admin/campaigns/recipientlistentry/import/",
    "/admin/campaigns/recipientsource/add/",
    "/admin/campaigns/delivery/",
    "/admin/auth/user/add/",
]


@pytest.fixture
def watched(browser: AdminBrowser):
    """The browser, reporting CSP violations of every page it loads from now on."""
    script = browser.driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": COLLECT}
    )
    yield browser
    browser.driver.execute_cdp_cmd(
        "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
    )


def violations(browser: AdminBrowser) -> list[str]:
    return browser.driver.execute_script("return window.__cspViolations || [];")


def test_admin_pages_load_their_scripts_and_styles_without_a_violation(watched: AdminBrowser):
    get_user_model().objects.create_superuser("root", "root@example.org", "password")
    f.RecipientListEntryFactory()
    watched.log_in("root")
    assert violations(watched) == []
    for path in PAGES:
        watched.visit(path)
        if path.endswith(("/add/", "/import/")):
            # The admin's JavaScript ran (jsi18n and the admin's own files load from 'self').
            assert watched.driver.execute_script("return typeof django === 'object'"), path
        assert violations(watched) == [], path


def test_the_export_pages_select_all_checkbox_still_works(watched: AdminBrowser):
    get_user_model().objects.create_superuser("root", "root@example.org", "password")
    watched.log_in("root")
    watched.visit("/admin/campaigns/delivery/export/")
    toggle = watched.find("input.select-toggle")
    boxes = watched.find_all(".selectable-field-export-row input[type=checkbox]")
    assert boxes and all(box.is_selected() for box in boxes)
    toggle.click()  # onchange="onSelectToggleChange(event)", allowed by its hash
    assert not any(box.is_selected() for box in boxes)
    assert violations(watched) == []
    assert watched.driver.find_elements(By.CSS_SELECTOR, "#content form")
