"""The ``recipient_list`` audience: the entries of a list imported from CSV or XLSX."""

from __future__ import annotations

from django import forms
from django.db import models

from campaigns.models import RecipientList, RecipientListEntry
from campaigns.resolvers.base import QuerySetResolver, ResolvedRecipient


class RecipientListForm(forms.Form):
    """Parameters of the recipient_list resolver."""

    recipient_list = forms.ModelChoiceField(
        queryset=RecipientList.objects.all(), help_text="id of an imported recipient list"
    )


class RecipientListResolver(QuerySetResolver):
    """The entries of an imported recipient list (ids are entry ids, keys are addresses)."""

    label = "Imported recipient list"
    description = "The addresses of a list imported from CSV or XLSX."
    parameters_form = RecipientListForm

    def get_queryset(self) -> models.QuerySet:
        return RecipientListEntry.objects.filter(
            recipient_list_id=self.parameters["recipient_list"]
        )

    def to_recipient(self, entry: RecipientListEntry) -> ResolvedRecipient:
        return ResolvedRecipient(
            key=f"email:{entry.email.lower()}",
            user_id=entry.user_id,
            email=entry.email,
            language=entry.language,
            time_zone=entry.time_zone,
            context={
                **(entry.extra or {}),
                "first_name": entry.first_name,
                "last_name": entry.last_name,
            },
        )
