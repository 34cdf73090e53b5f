"""A Content-Security-Policy on the admin and the public pages (django-csp), that the admin's
own pages obey: no inline script, no inline event handler but the one the policy allows by
hash. The browser test (tests/browser/test_csp.py) checks the same pages in Chromium."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from django.urls import reverse

import campaigns.admin  # noqa: F401  (registers the admin)
from tests.campaigns import factories as f

pytestmark = pytest.mark.django_db

ADMIN_PAGES = [
    "admin:index",
    "admin:campaigns_campaign_changelist",
    "admin:campaigns_campaign_add",
    "admin:campaigns_messagetypedefinition_add",
    "admin:campaigns_recipientlistentry_changelist",
    "admin:campaigns_recipientlistentry_import",
    "admin:campaigns_recipientlistentry_export",
    "admin:campaigns_recipientsource_add",
    "admin:campaigns_delivery_changelist",
    "admin:campaigns_delivery_export",
    "admin:auth_user_changelist",
    "admin:auth_user_add",
]

SCRIPT_TAG = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
EVENT_HANDLER = re.compile(r"""\s(on[a-z]+)\s*=\s*("[^"]*"|'[^']*')""", re.I)


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = [part.split() for part in header.split(";") if part.strip()]
    return {name: values for name, *values in directives}


def sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def obeys(html: str, csp: dict[str, list[str]]) -> list[str]:
    """What in ``html`` this policy would block: inline scripts, event handlers whose hash the
    policy does not list, javascript: URLs."""
    problems = []
    for attrs, body in SCRIPT_TAG.findall(html):
        if "src=" in attrs or 'type="application/json"' in attrs:
            continue
        if body.strip() and sha256(body) not in csp["script-src"]:
            problems.append(f"inline script: {body.strip()[:80]!r}")
    for name, value in EVENT_HANDLER.findall(html):
        source = value[1:-1]
        allowed = "'unsafe-hashes'" in csp["script-src"] and sha256(source) in csp["script-src"]
        if not allowed:
            problems.append(f"{name}={value}")
    if re.search(r"""(href|src|action)\s*=\s*["']\s*javascript:""", html, re.I):
        problems.append("javascript: URL")
    return problems


def test_the_policy_allows_scripts_from_this_site_only():
    from django.test import Client

    response = Client().get(reverse("admin:login"))
    csp = policy(response)
    assert csp["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"] and csp["form-action"] == ["'self'"]
    assert obeys(response.content.decode(), csp) == []


@pytest.mark.parametrize("name", ADMIN_PAGES)
def test_admin_pages_carry_the_policy_and_obey_it(admin_client, name):
    f.RecipientListEntryFactory()
    response = admin_client.get(reverse(name))
    assert response.status_code == 200
    csp = policy(response)
    assert obeys(response.content.decode(), csp) == []


def test_the_export_pages_select_all_handler_is_allowed_by_its_hash(admin_client):
    response = admin_client.get(reverse("admin:campaigns_delivery_export"))
    html = response.content.decode()
    assert 'onchange="onSelectToggleChange(event)"' in html
    assert sha256("onSelectToggleChange(event)") in policy(response)["script-src"]


def test_the_public_unsubscribe_page_carries_the_policy(client):
    response = client.get(reverse("campaigns:unsubscribe", args=["not-a-token"]))
    assert response.status_code == 400
    csp = policy(response)
    assert "'unsafe-inline'" not in csp["script-src"]
    assert obeys(response.content.decode(), csp) == []
