"""Operator roles: the groups the migration creates and `setup_groups` keeps complete."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command

from campaigns.permissions import GROUP_PERMISSIONS, setup_groups

pytestmark = pytest.mark.django_db


def _perms(group: str) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name=group).permissions.select_related("content_type")
    }


def test_migration_created_groups_with_their_permissions():
    for group, perms in GROUP_PERMISSIONS.items():
        assert _perms(group) == set(perms)


def test_roles_are_separate():
    assert "campaigns.approve_campaign" in _perms("Approvers")
    assert "campaigns.approve_campaign" not in _perms("Operators")
    assert {"campaigns.test_send_campaign", "campaigns.schedule_campaign"} <= _perms("Operators")
    auditors = _perms("Auditors")
    assert all(p.split(".")[1].startswith("view_") for p in auditors)
    assert "campaigns.view_delivery" in auditors


def test_setup_groups_is_idempotent_and_repairs(capsys):
    group = Group.objects.get(name="Operators")
    group.permissions.remove(Permission.objects.get(codename="test_send_campaign"))
    Group.objects.filter(name="Auditors").delete()
    call_command("setup_groups")
    out = capsys.readouterr().out
    assert "Operators: 1 permission(s) added" in out
    assert f"Auditors: {len(GROUP_PERMISSIONS['Auditors'])} permission(s) added" in out
    assert setup_groups(Group, Permission) == dict.fromkeys(GROUP_PERMISSIONS, 0)
    assert _perms("Operators") == set(GROUP_PERMISSIONS["Operators"])


def test_manual_extra_permission_is_kept():
    extra = Permission.objects.get(codename="delete_campaign")
    Group.objects.get(name="Auditors").permissions.add(extra)
    setup_groups(Group, Permission)
    assert "campaigns.delete_campaign" in _perms("Auditors")


def test_unknown_permission_is_a_clear_error(monkeypatch):
    from django.core.management.base import CommandError

    monkeypatch.setitem(GROUP_PERMISSIONS, "Auditors", ["campaigns.view_nothing"])
    with pytest.raises(CommandError, match=r"campaigns\.view_nothing does not exist"):
        call_command("setup_groups")
