"""Every factory builds a valid, saved row (other helpers rely on them)."""

import pytest

from tests.campaigns import factories as f

pytestmark = pytest.mark.django_db

ALL = [
    f.UserFactory,
    f.StaffUserFactory,
    f.SuperUserFactory,
    f.GroupFactory,
    f.MessageTypeDefinitionFactory,
    f.TemplatePartFactory,
    f.RecipientListFactory,
    f.RecipientListEntryFactory,
    f.RecipientSourceFactory,
    f.PolicyToggleFactory,
    f.OptOutFactory,
    f.CampaignFactory,
    f.CampaignRunFactory,
    f.DeliveryFactory,
]


@pytest.mark.parametrize("factory_class", ALL, ids=lambda c: c.__name__)
def test_factory_creates_valid_row(factory_class):
    obj = factory_class()
    obj.full_clean(exclude=["password"])
    assert obj.pk is not None


def test_user_factory_grants_permissions_and_group_members():
    user = f.StaffUserFactory(permissions=["campaigns.approve_campaign"])
    assert user.has_perm("campaigns.approve_campaign")
    assert not user.has_perm("campaigns.test_send_campaign")
    group = f.GroupFactory(members=[user])
    assert list(group.user_set.all()) == [user]
    assert user.check_password("password")


def test_email_template_parts_creates_each_part():
    mt = f.MessageTypeDefinitionFactory()
    parts = f.email_template_parts(mt, subject="Hi")
    assert {p.filename for p in parts} == {
        "from_name.txt",
        "subject.txt",
        "body.txt",
        "body.html",
        "head.html",
    }
    assert mt.template_parts.get(filename="subject.txt").content == "Hi"
