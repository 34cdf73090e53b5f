"""Audiences of users: every active user (``all_active_users``) and the active members of a
Django group (``group_members``)."""

from __future__ import annotations

from django import forms
from django.contrib.auth.models import Group
from django.db import models

from campaigns.resolvers.base import UserResolver


class AllActiveUsersResolver(UserResolver):
    """Every active user."""

    label = "All active users"
    description = "Every user whose account is active."


class GroupMembersForm(forms.Form):
    """Parameters of the group_members resolver."""

    group = forms.ModelChoiceField(
        queryset=Group.objects.all(), help_text="id of a Django group (auth.Group)"
    )


class GroupMembersResolver(UserResolver):
    """The active members of one Django group."""

    label = "Members of a group"
    description = "Active users in one Django group."
    parameters_form = GroupMembersForm

    def users(self) -> models.QuerySet:
        return super().users().filter(groups__pk=self.parameters["group"])
