"""The batch form of unsubscribe links gives exactly the links of ``unsubscribe_url``."""

from __future__ import annotations

import pytest

from campaigns.signing import read_unsubscribe_token, unsubscribe_url, unsubscribe_url_factory


@pytest.mark.parametrize("message_type_id", [None, 7])
def test_factory_matches_unsubscribe_url(settings, message_type_id):
    settings.SITE_URL = "https://learn.example.org/"
    make = unsubscribe_url_factory(message_type_id)
    for email in ["Ada@Example.org", "zoë+tag@exämple.org", "o'brien@example.org"]:
        url = make(email)
        assert url == unsubscribe_url(email, message_type_id)
        token = url.rstrip("/").rsplit("/", 1)[1]
        request = read_unsubscribe_token(token)
        assert (request.email, request.message_type_id) == (email.lower(), message_type_id)


def test_factory_refuses_what_unsubscribe_url_refuses():
    with pytest.raises(ValueError):
        unsubscribe_url_factory(1)("not-an-address")
