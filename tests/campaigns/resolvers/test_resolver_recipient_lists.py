"""Imported recipient lists as an audience (campaigns/resolvers/recipient_lists.py)."""

from __future__ import annotations

import pytest

from campaigns.resolvers import RecipientListResolver, ResolvedRecipient
from tests.campaigns import factories as f

pytestmark = pytest.mark.django_db


def test_recipient_list_resolves_entries_with_their_context():
    rlist = f.RecipientListFactory()
    user = f.UserFactory(email="linked@example.org")
    first = f.RecipientListEntryFactory(
        recipient_list=rlist,
        email="linked@example.org",
        user=user,
        first_name="Lin",
        language="fr",
        time_zone="Europe/Paris",
        extra={"course": "Physics"},
    )
    second = f.RecipientListEntryFactory(recipient_list=rlist, email="free@example.org")
    f.RecipientListEntryFactory()  # another list
    resolver = RecipientListResolver(
        RecipientListResolver.clean_parameters({"recipient_list": rlist.pk})
    )
    assert resolver.count() == 2
    chunks = list(resolver.iter_id_chunks(chunk_size=1))
    assert chunks == [[first.pk], [second.pk]]
    linked, free = resolver.recipients_for_ids([first.pk, second.pk])
    assert linked == ResolvedRecipient(
        key="email:linked@example.org",
        user_id=user.pk,
        email="linked@example.org",
        language="fr",
        time_zone="Europe/Paris",
        context={"course": "Physics", "first_name": "Lin", "last_name": "Person"},
    )
    assert free.user_id is None and free.key == "email:free@example.org"
