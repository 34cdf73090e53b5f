"""The database template loader: serves parts at ACE paths, by language, cached, invalidated."""

import pytest
from django.db import connection
from django.template import TemplateDoesNotExist, TemplateSyntaxError, engines, loader
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from campaigns import template_loader
from campaigns.models import TemplatePart
from tests.campaigns.factories import MessageTypeDefinitionFactory, TemplatePartFactory

pytestmark = pytest.mark.django_db

PATH = "campaigns/edx_ace/{name}/email/subject.txt"


def _db_loader():
    return next(
        ld
        for ld in engines["django"].engine.template_loaders
        if isinstance(ld, template_loader.DatabaseLoader)
    )


@pytest.fixture(autouse=True)
def _fresh_loader():
    _db_loader().reset()
    yield
    _db_loader().reset()


@pytest.fixture
def mt():
    return MessageTypeDefinitionFactory(name="welcome")


def render(path, context=None, language="en"):
    with translation.override(language):
        return loader.get_template(path).render(context or {})


def test_serves_database_part_at_ace_path(mt):
    TemplatePartFactory(message_type=mt, content="Hi {{ first_name }}")
    assert render(PATH.format(name="welcome"), {"first_name": "Ada"}) == "Hi Ada"


def test_language_then_base_language_then_fallback(mt):
    TemplatePartFactory(message_type=mt, language="", content="any")
    TemplatePartFactory(message_type=mt, language="pt", content="pt")
    TemplatePartFactory(message_type=mt, language="fr-ca", content="fr-ca")
    path = PATH.format(name="welcome")
    assert render(path, language="pt-br") == "pt"
    assert render(path, language="pt") == "pt"
    assert render(path, language="fr-ca") == "fr-ca"
    assert render(path, language="fr") == "any"
    assert render(path, language="de") == "any"


def test_unknown_path_falls_through_to_files(mt):
    with pytest.raises(TemplateDoesNotExist):
        loader.get_template(PATH.format(name="nope"))
    # A code-defined type's file template is still found (by the filesystem loader).
    tpl = loader.get_template("campaigns/edx_ace/campaignannouncement/email/subject.txt")
    assert tpl.render({"headline": "News"}) == "News"


def test_second_render_makes_no_query(mt):
    TemplatePartFactory(message_type=mt, content="Hi {{ first_name }}")
    path = PATH.format(name="welcome")
    file_path = "campaigns/edx_ace/campaignannouncement/email/subject.txt"
    render(path, {"first_name": "a"})
    render(file_path, {"headline": "x"})
    with CaptureQueriesContext(connection) as ctx:
        for _ in range(50):
            assert render(path, {"first_name": "b"}) == "Hi b"
            # Negative lookups (file templates of code-defined types) are cached too.
            assert render(file_path, {"headline": "x"}) == "x"
    assert ctx.captured_queries == []


def test_saving_a_part_invalidates_cache(mt):
    part = TemplatePartFactory(message_type=mt, content="old")
    path = PATH.format(name="welcome")
    assert render(path) == "old"
    part.content = "new"
    part.save()
    assert render(path) == "new"
    part.delete()
    with pytest.raises(TemplateDoesNotExist):
        loader.get_template(path)


def test_other_process_edit_seen_after_ttl(mt, settings, monkeypatch):
    """A change made elsewhere (no signal here) is noticed through the database stamp."""
    settings.CAMPAIGNS_TEMPLATE_CACHE_TTL = 0
    part = TemplatePartFactory(message_type=mt, content="old")
    path = PATH.format(name="welcome")
    assert render(path) == "old"
    monkeypatch.setattr(template_loader, "bump_generation", lambda **kw: None)
    # Simulate another process: save through a queryset update (no signal) with a new stamp.
    TemplatePart.objects.filter(pk=part.pk).update(
        content="edited elsewhere", updated_at=part.updated_at.replace(year=2099)
    )
    assert render(path) == "edited elsewhere"


def test_renaming_message_type_moves_its_templates(mt):
    TemplatePartFactory(message_type=mt, content="x")
    assert render(PATH.format(name="welcome")) == "x"
    mt.name = "hello"
    mt.save()
    assert render(PATH.format(name="hello")) == "x"
    with pytest.raises(TemplateDoesNotExist):
        loader.get_template(PATH.format(name="welcome"))


@pytest.mark.parametrize(
    "source",
    [
        "{{ settings.SECRET_KEY }}",
        "{% debug %}",
        "{% load admin_urls %}",
        "{% include 'admin/base.html' %}",
        "{% include some_variable %}",
        "{% extends 'base.html' %}",
        "{% if request.user %}x{% endif %}",
    ],
)
def test_database_templates_are_sandboxed_at_render_time(mt, source):
    """Even a part saved without the admin's validation cannot escape the sandbox."""
    TemplatePartFactory(message_type=mt, content=source)
    with pytest.raises(TemplateSyntaxError):
        loader.get_template(PATH.format(name="welcome"))


def test_settings_not_reachable_through_context(mt, settings):
    TemplatePartFactory(message_type=mt, content="[{{ channel.sailthru_client.secret }}]")

    class Channel:
        channel_type = None
        sailthru_client = type("C", (), {"secret": "s3cret"})()

    assert render(PATH.format(name="welcome"), {"channel": Channel()}) == "[]"


def test_allowed_include_of_ace_path(mt):
    other = MessageTypeDefinitionFactory(name="footer")
    TemplatePartFactory(message_type=other, content="(footer {{ x }})")
    TemplatePartFactory(
        message_type=mt, content="body {% include 'campaigns/edx_ace/footer/email/subject.txt' %}"
    )
    assert render(PATH.format(name="welcome"), {"x": 1}) == "body (footer 1)"


@pytest.mark.usefixtures("camp_admin_env")
def test_ace_renders_database_parts_without_queries_per_message(email_type):
    """ace's own renderer finds the parts (no special case) and a batch costs no template query."""
    from ace import presentation
    from ace.channel import ChannelType, get_channel_for_message
    from ace.message import Message
    from ace.recipient import Recipient

    def message(i, language="en"):
        return Message(
            app_label="campaigns",
            name="newsletter",
            recipient=Recipient(lms_user_id=i, email_address=f"u{i}@example.org"),
            language=language,
            context={"first_name": f"N{i}", "headline": "H"},
        )

    channel = get_channel_for_message(ChannelType.EMAIL, message(0))
    presentation.render(channel, message(0))
    with CaptureQueriesContext(connection) as ctx:
        rendered = [presentation.render(channel, message(i)) for i in range(1, 101)]
    assert ctx.captured_queries == []
    assert rendered[41].subject == "H for N42"
    assert "<b>N42</b>" in rendered[41].body_html


# ----------------------------------------------------------------------------------------------
# The sandbox holds for parts served by the loader, on every render path (V3, V4)
# ----------------------------------------------------------------------------------------------


def _message(i=1, **context):
    from ace.message import Message
    from ace.recipient import Recipient

    return Message(
        app_label="campaigns",
        name="newsletter",
        recipient=Recipient(lms_user_id=i, email_address=f"u{i}@example.org"),
        language="en",
        context={"first_name": f"N{i}", "headline": "H", **context},
        options={"headers": {"List-Unsubscribe": f"<https://x.example/u/{i}>"}},
    )


@pytest.mark.usefixtures("camp_admin_env")
def test_ace_renders_database_parts_without_calling_message_methods(email_type):
    """{{ message.options.popitem }} removed List-Unsubscribe; .clear made the batch raise."""
    from ace import presentation
    from ace.channel import ChannelType, get_channel_for_message

    TemplatePart.objects.filter(message_type=email_type, filename="subject.txt").update(
        content="{{ message.options.popitem }}{{ message.options.clear }}{{ items.pop }}S"
    )
    _db_loader().reset()
    items = ["a", "b"]
    message = _message(items=items)
    channel = get_channel_for_message(ChannelType.EMAIL, message)
    assert presentation.render(channel, message).subject == "S"
    assert message.options == {"headers": {"List-Unsubscribe": "<https://x.example/u/1>"}}
    assert items == ["a", "b"]


def test_a_part_including_itself_fails_with_a_clear_error_not_recursion(mt):
    """A template including itself raised RecursionError (HTTP 500 on test send)."""
    from campaigns.sandbox import TemplateLimitError

    TemplatePartFactory(
        message_type=mt, content="x{% include 'campaigns/edx_ace/welcome/email/subject.txt' %}"
    )
    with pytest.raises(TemplateLimitError, match="nest more than 5 deep"):
        render(PATH.format(name="welcome"))


def test_include_depth_is_the_setting(mt, settings):
    from campaigns.sandbox import TemplateLimitError

    for depth in range(4):
        TemplatePartFactory(
            message_type=MessageTypeDefinitionFactory(name=f"level{depth}"),
            content=f"{depth}{{% include '{PATH.format(name=f'level{depth + 1}')}' %}}",
        )
    TemplatePartFactory(message_type=MessageTypeDefinitionFactory(name="level4"), content="4")
    assert render(PATH.format(name="level0")) == "01234"  # four nested includes
    settings.CAMPAIGNS_TEMPLATE_MAX_INCLUDE_DEPTH = 3
    with pytest.raises(TemplateLimitError, match="nest more than 3 deep"):
        render(PATH.format(name="level0"))


def test_a_file_template_extending_a_database_part_gets_the_sandbox(mt):
    """The parent of an {% extends %} is rendered without Template.render: still sandboxed."""
    from django.template import Context, Template

    TemplatePartFactory(message_type=mt, content="[{{ items.pop }}{{ items|length }}]")
    items = [1, 2, 3]
    child = Template(
        "{% extends 'campaigns/edx_ace/welcome/email/subject.txt' %}",
        engine=engines["django"].engine,
    )
    with translation.override("en"):
        assert child.render(Context({"items": items})) == "[3]"
    assert items == [1, 2, 3]


@pytest.mark.usefixtures("camp_admin_env")
def test_a_limit_fails_only_the_message_that_hit_it_in_a_batch(email_type):
    """The batch path (BatchSender.prepare) turns the limit into a FAILED outcome with the
    reason; the other messages of the batch go on."""
    from ace.batch import BatchSender
    from ace.outcome import OutcomeStatus

    TemplatePart.objects.filter(message_type=email_type, filename="subject.txt").update(
        content="{{ headline|ljust:width }}"
    )
    _db_loader().reset()
    messages = [_message(1, width="3"), _message(2, width="300000000"), _message(3, width="2")]
    with BatchSender() as sender:
        prepared, decided = sender.prepare(messages)
    assert [p.rendered.subject for p in prepared] == ["H  ", "H "]
    (failed,) = decided
    assert failed.message is messages[1] and failed.status == OutcomeStatus.FAILED
    assert "ljust:300000000 is over the limit of 1000" in failed.reason
