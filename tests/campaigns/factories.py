"""factory-boy factories for every campaigns model, plus users and groups (shared by all tests)."""

import datetime as dt
import uuid

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.utils import timezone
from factory.django import DjangoModelFactory

from campaigns.models import (
    Campaign,
    CampaignRun,
    ChannelChoice,
    Delivery,
    MessageTypeDefinition,
    OptOut,
    PolicyToggle,
    RecipientList,
    RecipientListEntry,
    RecipientSource,
    TemplatePart,
)


class UserFactory(DjangoModelFactory):
    """An active user with a unique username/email; password is "password"."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.org")
    first_name = factory.Sequence(lambda n: f"First{n}")
    last_name = factory.Sequence(lambda n: f"Last{n}")
    is_active = True
    password = factory.django.Password("password")

    @factory.post_generation
    def permissions(self, create: bool, extracted, **kwargs) -> None:
        """``UserFactory(permissions=["campaigns.approve_campaign"])`` grants those perms."""
        if not create or not extracted:
            return
        for perm in extracted:
            app_label, codename = perm.split(".", 1)
            self.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


class StaffUserFactory(UserFactory):
    """A staff user (can log into the admin) with no permissions unless given."""

    is_staff = True


class SuperUserFactory(UserFactory):
    """A superuser: every permission."""

    is_staff = True
    is_superuser = True


class GroupFactory(DjangoModelFactory):
    """An auth group; pass ``members=[user, ...]`` to add users."""

    class Meta:
        model = Group
        django_get_or_create = ("name",)
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"group{n}")

    @factory.post_generation
    def members(self, create: bool, extracted, **kwargs) -> None:
        if create and extracted:
            self.user_set.add(*extracted)


class MessageTypeDefinitionFactory(DjangoModelFactory):
    """A database-defined message type (no template parts; use TemplatePartFactory)."""

    class Meta:
        model = MessageTypeDefinition

    app_label = "campaigns"
    name = factory.Sequence(lambda n: f"message-type-{n}")
    description = "A message type made by a factory."
    source = MessageTypeDefinition.Source.DATABASE
    default_language = "en"
    sample_context = factory.LazyFunction(dict)


class TemplatePartFactory(DjangoModelFactory):
    """One template file of a message type (default: the email subject, any language)."""

    class Meta:
        model = TemplatePart

    message_type = factory.SubFactory(MessageTypeDefinitionFactory)
    channel = ChannelChoice.EMAIL
    filename = TemplatePart.Filename.SUBJECT
    language = ""
    content = "Hello {{ first_name }}"


def email_template_parts(message_type: MessageTypeDefinition, language: str = "", **content):
    """Create the four usual email parts for ``message_type``; override any via keyword
    (``subject=``, ``body_text=``, ``body_html=``, ``from_name=``, ``head_html=``)."""
    defaults = {
        TemplatePart.Filename.FROM_NAME: content.get("from_name", "Campaigns"),
        TemplatePart.Filename.SUBJECT: content.get("subject", "Hello {{ first_name }}"),
        TemplatePart.Filename.BODY_TEXT: content.get("body_text", "Dear {{ first_name }}, hi."),
        TemplatePart.Filename.BODY_HTML: content.get(
            "body_html", "<p>Dear {{ first_name }}, hi.</p>"
        ),
        TemplatePart.Filename.HEAD_HTML: content.get("head_html", ""),
    }
    return [
        TemplatePartFactory(
            message_type=message_type,
            channel=ChannelChoice.EMAIL,
            filename=filename,
            language=language,
            content=text,
        )
        for filename, text in defaults.items()
    ]


class RecipientListFactory(DjangoModelFactory):
    """An imported recipient list (no entries; use RecipientListEntryFactory)."""

    class Meta:
        model = RecipientList

    name = factory.Sequence(lambda n: f"list-{n}")


class RecipientListEntryFactory(DjangoModelFactory):
    """One address in a recipient list, not linked to a user."""

    class Meta:
        model = RecipientListEntry

    recipient_list = factory.SubFactory(RecipientListFactory)
    email = factory.Sequence(lambda n: f"entry{n}@example.org")
    first_name = factory.Sequence(lambda n: f"Entry{n}")
    last_name = "Person"
    extra = factory.LazyFunction(dict)


class RecipientSourceFactory(DjangoModelFactory):
    """An audience: every active user by default."""

    class Meta:
        model = RecipientSource

    name = factory.Sequence(lambda n: f"source-{n}")
    resolver = "all_active_users"
    parameters = factory.LazyFunction(dict)


class PolicyToggleFactory(DjangoModelFactory):
    """A global toggle of the opt-out policy, on."""

    class Meta:
        model = PolicyToggle

    policy = "campaigns_optout"
    message_type = None
    enabled = True
    parameters = factory.LazyFunction(dict)


class OptOutFactory(DjangoModelFactory):
    """A global unsubscribe of one address."""

    class Meta:
        model = OptOut

    email = factory.Sequence(lambda n: f"optout{n}@example.org")
    user = None
    message_type = None


class CampaignFactory(DjangoModelFactory):
    """A draft campaign sending its message type by email now, created by a staff user."""

    class Meta:
        model = Campaign
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Campaign {n}")
    message_type = factory.SubFactory(MessageTypeDefinitionFactory)
    recipient_source = factory.SubFactory(RecipientSourceFactory)
    context = factory.LazyFunction(dict)
    channels = factory.LazyFunction(lambda: [ChannelChoice.EMAIL.value])
    language = ""
    status = Campaign.Status.DRAFT
    schedule_kind = Campaign.ScheduleKind.NOW
    time_zone = "UTC"
    created_by = factory.SubFactory(StaffUserFactory)

    @factory.post_generation
    def approve_content(self, create: bool, extracted, **kwargs) -> None:
        """A campaign made past approval (approved, scheduled, running, paused) is approved as
        it stands: ``approved_digest`` is its content digest (a run starts only while that
        matches), unless a digest is given or ``approve_content=False``."""
        from campaigns.services.campaigns import campaign_content_digest

        S = Campaign.Status
        past = (S.APPROVED, S.SCHEDULED, S.RUNNING, S.PAUSED)
        if not create or extracted is False or self.approved_digest or self.status not in past:
            return
        self.approved_digest = campaign_content_digest(campaign=self)
        Campaign.objects.filter(pk=self.pk).update(approved_digest=self.approved_digest)


class CampaignRunFactory(DjangoModelFactory):
    """A pending run of a campaign, due now (each run gets a distinct due time)."""

    class Meta:
        model = CampaignRun

    campaign = factory.SubFactory(CampaignFactory)
    due_at = factory.Sequence(
        lambda n: timezone.now().replace(microsecond=0) + dt.timedelta(seconds=n)
    )
    status = CampaignRun.Status.PENDING


class DeliveryFactory(DjangoModelFactory):
    """A sent email delivery of one user in a run."""

    class Meta:
        model = Delivery

    run = factory.SubFactory(CampaignRunFactory)
    user_id = factory.Sequence(lambda n: n + 1)
    email = factory.Sequence(lambda n: f"recipient{n}@example.org")
    recipient_key = factory.LazyAttribute(lambda o: f"user:{o.user_id}")
    channel = ChannelChoice.EMAIL
    status = Delivery.Status.SENT
    attempts = 1
    send_uuid = factory.LazyAttribute(lambda o: o.run.send_uuid)
    message_uuid = factory.LazyFunction(uuid.uuid4)
    sent_at = factory.LazyFunction(timezone.now)
