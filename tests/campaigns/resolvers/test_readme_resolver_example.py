"""The README's recipient resolver example runs as written."""

from __future__ import annotations

import datetime as dt
import re
import types
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.resolvers import CampaignRecipientResolver
from tests.campaigns import factories as f

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parents[3] / "README.md"


def _example_module() -> types.ModuleType:
    text = README.read_text()
    section = text.split("## Extending: recipient resolvers", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module = types.ModuleType("readme_resolvers")
    exec(compile(code, "README.md", "exec"), module.__dict__)
    return module


def test_readme_example_resolver_works():
    cls = _example_module().RecentSignupsResolver
    assert issubclass(cls, CampaignRecipientResolver)
    new = f.UserFactory(date_joined=timezone.now() - dt.timedelta(days=3))
    f.UserFactory(date_joined=timezone.now() - dt.timedelta(days=90))
    resolver = cls(cls.clean_parameters({"days": 30}))
    assert [r.user_id for r in resolver.iter_recipients()] == [new.pk]
    with pytest.raises(ValidationError, match="days:"):
        cls.clean_parameters({"days": 0})
