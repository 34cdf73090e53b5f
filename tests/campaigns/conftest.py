"""Fixtures shared by the campaigns tests: users per role, a message type with email templates,
and a clean ACE/template-cache environment. Nothing here is autouse."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group
from django.template import engines

from ace.utils import once
from campaigns import template_loader
from tests.campaigns.factories import (
    MessageTypeDefinitionFactory,
    StaffUserFactory,
    email_template_parts,
)
from tests.campaigns.plugin_caches import reset_plugin_caches


def _reset_caches() -> None:
    once.reset_all()
    for loader in engines["django"].engine.template_loaders:
        if isinstance(loader, template_loader.DatabaseLoader):
            loader.reset()


@pytest.fixture
def dispatch_settings(settings) -> Iterator:
    """In-process sending: locmem email, small batches, no rate limit, DB buckets, fresh
    plugin caches."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.ACE_ENABLED_CHANNELS = ["django_email"]
    settings.CAMPAIGNS_BATCH_SIZE = 4
    settings.CAMPAIGNS_SEND_CHUNK_SIZE = 2
    settings.CAMPAIGNS_CHANNEL_RATE_LIMITS = ""
    settings.CAMPAIGNS_RATE_LIMIT_REDIS_URL = ""
    settings.CAMPAIGNS_SENDING_LEASE_SECONDS = 300
    reset_plugin_caches()
    yield settings
    reset_plugin_caches()


@pytest.fixture
def camp_admin_env(settings) -> Iterator[None]:
    """django_email as the only channel, mail in mail.outbox, fresh plugin and template caches."""
    settings.ACE_ENABLED_CHANNELS = ["django_email"]
    settings.ACE_CHANNEL_DEFAULT_EMAIL = "django_email"
    settings.ACE_CHANNEL_TRANSACTIONAL_EMAIL = "django_email"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "Campaigns <noreply@example.org>"
    _reset_caches()
    yield
    _reset_caches()


def _member(group: str, **kwargs):
    user = StaffUserFactory(**kwargs)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def operator(db):
    """A staff user in the Operators group (created by the 0003_groups migration)."""
    return _member("Operators", username="operator")


@pytest.fixture
def other_operator(db):
    return _member("Operators", username="operator2")


@pytest.fixture
def approver(db):
    """A staff user in the Approvers group."""
    return _member("Approvers", username="approver")


@pytest.fixture
def auditor(db):
    """A staff user in the Auditors group."""
    return _member("Auditors", username="auditor")


@pytest.fixture
def bare_staff(db):
    """A staff user with no permission at all."""
    return StaffUserFactory(username="nobody")


@pytest.fixture
def email_type(db):
    """A database message type with complete email templates using first_name and headline."""
    definition = MessageTypeDefinitionFactory(
        name="newsletter", sample_context={"headline": "Sample headline"}
    )
    email_template_parts(
        definition,
        subject="{{ headline }} for {{ first_name }}",
        body_text="Hello {{ first_name }}. {{ headline }}",
        body_html="<p>Hello <b>{{ first_name }}</b></p><script>alert(1)</script>",
    )
    return definition
