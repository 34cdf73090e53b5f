"""Tests for ace.utils.plugins (stevedore loading of ACE plugins)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from django.core.exceptions import ImproperlyConfigured

from ace.channel.django_email import DjangoEmailChannel
from ace.utils import plugins

NAMESPACE = "openedx.ace.channel"


def extension(name, plugin):
    return SimpleNamespace(name=name, plugin=plugin)


class Off:
    @classmethod
    def enabled(cls):
        return False


class OffWithReason(Off):
    @classmethod
    def disabled_reason(cls):
        return "API key missing"


def test_check_plugin_filters_by_name_and_enabled(caplog):
    assert plugins.check_plugin(extension("a", DjangoEmailChannel), NAMESPACE) is True
    assert plugins.check_plugin(extension("a", DjangoEmailChannel), NAMESPACE, ["b"]) is False
    with caplog.at_level(logging.WARNING, logger="ace.utils.plugins"):
        assert plugins.check_plugin(extension("off", Off), NAMESPACE, ["off"]) is False
        assert plugins.check_plugin(extension("why", OffWithReason), NAMESPACE) is False
    assert "Off.enabled() returned False" in caplog.text
    assert "API key missing" in caplog.text


def test_get_plugins_loads_instances_in_the_given_order():
    loaded = plugins.get_plugins(NAMESPACE, ["django_email"])
    assert [ext.name for ext in loaded] == ["django_email"]
    assert isinstance(loaded[0].obj, DjangoEmailChannel)


def test_get_manager_instantiates():
    manager = plugins.get_manager(NAMESPACE, ["django_email"])
    assert [ext.name for ext in manager] == ["django_email"]
    assert isinstance(manager["django_email"].obj, DjangoEmailChannel)


def test_unknown_names_are_an_error():
    with pytest.raises(ImproperlyConfigured, match="typo_email"):
        plugins.get_plugins(NAMESPACE, ["django_email", "typo_email"])


def test_a_listed_plugin_that_fails_to_import_is_an_error():
    entry_point = SimpleNamespace(name="broken", value="nowhere:Nothing")
    manager = SimpleNamespace(namespace=NAMESPACE)
    with pytest.raises(ImproperlyConfigured, match="broken"):
        plugins._on_load_failure(["broken"], manager, entry_point, ImportError("nowhere"))
    # An unlisted plugin that fails to import is only logged.
    plugins._on_load_failure(["other"], manager, entry_point, ImportError("nowhere"))


def test_available_names_and_load_plugin_class():
    assert "django_email" in plugins.available_names(NAMESPACE)
    assert plugins.load_plugin_class(NAMESPACE, "django_email") is DjangoEmailChannel
    with pytest.raises(LookupError):
        plugins.load_plugin_class(NAMESPACE, "nothing_here")
