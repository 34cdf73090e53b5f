"""ResolvedRecipient, the base classes: keyset chunks, one-query loading, parameters, send()
(campaigns/resolvers/base.py)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from ace.message import MessageType
from campaigns.resolvers import (
    AllActiveUsersResolver,
    CampaignRecipientResolver,
    GroupMembersResolver,
)
from tests.campaigns import factories as f

pytestmark = pytest.mark.django_db


def test_keyset_chunks_cover_the_audience_once_in_id_order(django_assert_num_queries):
    users = f.UserFactory.create_batch(7)
    f.UserFactory(is_active=False)
    resolver = AllActiveUsersResolver({})
    # One query per chunk, plus the last (short) chunk ends the walk without another query.
    with django_assert_num_queries(3):
        chunks = list(resolver.iter_id_chunks(chunk_size=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [i for c in chunks for i in c] == [u.pk for u in users]
    # Resuming after a cursor continues from the next id.
    assert list(resolver.iter_id_chunks(after=users[4].pk, chunk_size=10)) == [
        [users[5].pk, users[6].pk]
    ]


def test_keyset_query_filters_on_id_and_never_offsets():
    f.UserFactory.create_batch(3)
    resolver = AllActiveUsersResolver({})
    queries = []
    from django.db import connection

    with mock.patch.object(connection, "force_debug_cursor", True):
        list(resolver.iter_id_chunks(chunk_size=2))
        queries = [q["sql"] for q in connection.queries[-2:]]
    assert all("OFFSET" not in q.upper() for q in queries)
    assert '"id" >' in queries[1]
    assert "ORDER BY" in queries[1].upper()


def test_exact_multiple_of_chunk_size_ends_with_one_empty_query(django_assert_num_queries):
    f.UserFactory.create_batch(4)
    with django_assert_num_queries(3):
        chunks = list(AllActiveUsersResolver({}).iter_id_chunks(chunk_size=2))
    assert [len(c) for c in chunks] == [2, 2]


def test_recipients_for_ids_is_one_query_keeps_order_and_drops_missing(
    django_assert_num_queries,
):
    a, b, c = f.UserFactory.create_batch(3)
    resolver = AllActiveUsersResolver({})
    b.is_active = False
    b.save()
    with django_assert_num_queries(1):
        recipients = resolver.recipients_for_ids([c.pk, b.pk, a.pk, 999_999])
    assert [r.user_id for r in recipients] == [c.pk, a.pk]
    assert resolver.recipients_for_ids([]) == []


def test_unknown_parameter_and_non_object_are_refused():
    group = f.GroupFactory()
    with pytest.raises(ValidationError, match="Unknown parameter"):
        GroupMembersResolver.clean_parameters({"group": group.pk, "grup": 1})
    with pytest.raises(ValidationError, match="JSON object"):
        GroupMembersResolver.clean_parameters(["group"])
    with pytest.raises(ValidationError, match="takes no parameters"):
        AllActiveUsersResolver.clean_parameters({"group": 1})


def test_send_personalizes_each_recipient_with_a_fresh_context():
    users = f.UserFactory.create_batch(3)
    msg_type = MessageType(app_label="campaigns", name="hello", context={"site": "Example"})
    with mock.patch("ace.ace.send") as send:
        assert AllActiveUsersResolver({}).send(msg_type, chunk_size=2) == 3
    messages = [call.args[0] for call in send.call_args_list]
    assert [m.recipient.lms_user_id for m in messages] == [u.pk for u in users]
    assert [m.context["first_name"] for m in messages] == [u.first_name for u in users]
    assert all(m.context["site"] == "Example" for m in messages)
    assert len({id(m.context) for m in messages}) == 3
    assert messages[0].options["recipient_key"] == f"user:{users[0].pk}"
    assert msg_type.context == {"site": "Example"}  # the shared context is untouched


def test_base_class_is_abstract_about_the_audience():
    with pytest.raises(NotImplementedError):
        list(CampaignRecipientResolver({}).iter_id_chunks())
    assert get_user_model()  # the user model is swappable; resolvers use get_user_model()
