"""The operator-template sandbox (campaigns.templating, campaigns.sandbox): what a template edited
in the admin may call (V3) and what one render may cost (V4)."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.template import Context, Template, TemplateSyntaxError, engines
from django.utils import translation

from ace.errors import FatalChannelDeliveryError
from campaigns import sandbox
from campaigns.sandbox import TemplateLimitError
from campaigns.templating import compile_template

ENGINE = engines["django"].engine


def sandboxed(source: str, context: dict | None = None, context_class=Context) -> str:
    return compile_template(source, engine=ENGINE).render(context_class(context or {}))


def plain(source: str, context: dict | None = None) -> str:
    return Template(source, engine=ENGINE).render(Context(context or {}))


class Account:
    """Not a model, but a method that changes it (no ``alters_data``)."""

    def __init__(self):
        self.closed = False
        self.name = "Ada"

    def close(self):
        self.closed = True
        return "closed"


# ----------------------------------------------------------------------------------------------
# V3: no callable with side effects is called
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["popitem", "clear", "pop", "update", "setdefault"])
def test_dict_mutators_are_not_called(method):
    headers = {"List-Unsubscribe": "<https://x.example/u>"}
    options = {"headers": headers, "campaign_id": 1}
    sandboxed(f"{{{{ options.{method} }}}}", {"options": options})
    assert options == {"headers": headers, "campaign_id": 1}


@pytest.mark.parametrize(
    ("value", "method"),
    [
        ([1, 2, 3], "pop"),
        ([1, 2, 3], "clear"),
        ([1, 2, 3], "reverse"),
        ([3, 1, 2], "sort"),
        ([1, 2, 3], "append"),
        ({1, 2, 3}, "pop"),
        ({1, 2, 3}, "clear"),
    ],
)
def test_list_and_set_methods_are_not_called_and_render_empty(value, method):
    before = type(value)(value)
    assert sandboxed(f"[{{{{ x.{method} }}}}]", {"x": value}) == "[]"
    assert value == before
    # Plain Django (what the attack used) does call them.
    plain(f"{{{{ x.{method} }}}}", {"x": value})
    assert value != before or method in ("append",)


@pytest.mark.django_db
def test_model_and_object_methods_are_not_called():
    user = get_user_model().objects.create_user("ada", password="secret")
    account = Account()
    out = sandboxed(
        "[{{ user.set_unusable_password }}][{{ user.save }}][{{ user.delete }}]"
        "[{{ user.refresh_from_db }}][{{ account.close }}][{{ account.name }}]"
        "[{{ user.username }}]",
        {"user": user, "account": account},
    )
    assert out == "[][][][][][Ada][ada]"
    assert user.has_usable_password() and not account.closed
    assert get_user_model().objects.filter(pk=user.pk).exists()


def test_functions_and_classes_are_not_called():
    calls = []
    out = sandboxed("[{{ f }}][{{ cls.attr }}]", {"f": lambda: calls.append(1), "cls": Account})
    assert out == "[][]" and calls == []


def test_plain_data_and_read_only_calls_still_work():
    context = {
        "user": {"first_name": "Ada", "tags": ["a", "b"]},
        "items": [{"title": "One"}, {"title": "Two"}],
        "prices": {"basic": 10, "pro": 20},
        "name": "ada lovelace",
        "account": Account(),
    }
    source = (
        "{{ user.first_name }} {{ user.tags.1 }} {{ items.0.title }} {{ items|length }} "
        "{% for k, v in prices.items %}{{ k }}={{ v }};{% endfor %} "
        "{% for k in prices.keys %}{{ k }}{% endfor %} "
        "{% for v in prices.values %}{{ v }}{% endfor %} "
        "{{ name.title }} {{ name.upper|lower }} {{ account.name }} "
        "{% for i in items %}{{ forloop.counter }}.{{ i.title }}{% endfor %}"
    )
    assert sandboxed(source, context) == plain(source, context)
    assert sandboxed(source, context).startswith("Ada b One 2 basic=10;pro=20; basicpro 1020 ")


def test_message_options_keep_the_unsubscribe_header():
    """{{ message.options.popitem }} removed List-Unsubscribe from sent mail (V3)."""
    from ace.message import Message
    from ace.recipient import Recipient

    message = Message(
        app_label="campaigns",
        name="x",
        recipient=Recipient(lms_user_id=1, email_address="a@example.org"),
        options={"headers": {"List-Unsubscribe": "<https://x.example/u>"}},
    )
    sandboxed(
        "{{ message.options.popitem }}{{ message.options.clear }}"
        "{{ message.options.headers.clear }}",
        {"message": message},
    )
    assert message.options == {"headers": {"List-Unsubscribe": "<https://x.example/u>"}}


def test_each_render_reads_its_own_copy_of_shared_data():
    """Even a mutation nothing foresaw (here: done by the test on what the template was given)
    cannot reach the shared campaign context or the next recipient's render."""
    shared = {"items": [{"title": "One"}, {"title": "Two"}]}
    seen: list = []

    class SpyContext(Context):
        def __getitem__(self, key):
            value = super().__getitem__(key)
            seen.append(value)
            return value

    template = compile_template("{% for i in items %}{{ i.title }},{% endfor %}", engine=ENGINE)
    assert template.render(SpyContext({**shared, "first_name": "A"})) == "One,Two,"
    given = next(v for v in seen if isinstance(v, list))
    assert given == shared["items"] and given is not shared["items"]
    assert given[0] is not shared["items"][0]
    given.pop()  # an "unforeseen" mutation of what the first render got
    given.append({"title": "Injected"})
    assert shared == {"items": [{"title": "One"}, {"title": "Two"}]}
    assert template.render(Context({**shared, "first_name": "B"})) == "One,Two,"


def test_items_pop_no_longer_changes_what_the_next_recipient_gets():
    """{{ items.pop }} on the shared campaign context changed the next recipients' mail (V3)."""
    shared = {"items": ["a", "b", "c"]}
    template = compile_template("{{ items.pop }}{{ items|join:',' }}", engine=ENGINE)
    outputs = [template.render(Context({**shared, "n": n})) for n in range(3)]
    assert outputs == ["a,b,c"] * 3 and shared["items"] == ["a", "b", "c"]


def test_file_templates_are_plain_django():
    """Templates shipped in code are not sandboxed: Django calls their methods as always."""
    items = [1, 2]
    assert plain("{{ items.pop }}", {"items": items}) == "2" and items == [1]
    account = Account()
    assert plain("{{ account.close }}", {"account": account}) == "closed" and account.closed


OPEN_EDX_STYLE = """{% load i18n static %}{% autoescape on %}
<h1>{% blocktrans %}Hello {{ first_name }},{% endblocktrans %}</h1>
<p>{% trans "Here are your courses:" %}</p>
{% for course in courses %}{% cycle 'odd' 'even' as parity silent %}
<div class="{{ parity }}"><a href="{{ course.url|urlencode:':/' }}">{{ course.title|title }}</a>
  {% blocktrans count counter=course.weeks with name=course.title %}{{ name }}: {{ counter }} week{% plural %}{{ name }}: {{ counter }} weeks{% endblocktrans %}
  {{ course.price|floatformat:2 }} {{ course.start|date:"Y-m-d" }} {{ course.summary|truncatewords:3 }}
  {% if course.tags %}{{ course.tags|join:", " }}{% else %}{% trans "no tags" %}{% endif %}
  {% ifchanged course.level %}<b>{{ course.level|upper }}</b>{% endifchanged %}
  {{ forloop.counter }}/{{ courses|length }}{% if forloop.last %} ({% trans "last" %}){% endif %}
</div>
{% empty %}{% trans "Nothing this week." %}{% endfor %}
{% for c in courses|dictsort:"title" %}{{ c.title|slice:":3" }}{% if not forloop.last %}|{% endif %}{% endfor %}
{% with total=courses|length %}{{ total|pluralize:"course,courses" }} {{ total|add:1 }}{% endwith %}
{{ missing|default:"-" }} {{ note|linebreaksbr }} {{ html }} {{ html|safe }} {% firstof none first_name %}
<img src="{% static 'campaigns/logo.png' %}"> {% include "campaigns/edx_ace/campaignannouncement/email/subject.txt" %}
{% endautoescape %}"""  # noqa: E501


def _open_edx_context():
    import datetime as dt

    return {
        "first_name": "Zoë <b>",
        "courses": [
            {
                "title": "data structures",
                "url": "https://x.example/c/1?a=1&b=2",
                "weeks": 1,
                "price": 12.5,
                "start": dt.date(2026, 6, 1),
                "summary": "one two three four five",
                "tags": ["cs", "algo"],
                "level": "intro",
            },
            {
                "title": "web writing",
                "url": "https://x.example/c/2",
                "weeks": 6,
                "price": 0,
                "start": dt.date(2026, 7, 1),
                "summary": "short",
                "tags": [],
                "level": "intro",
            },
            {
                "title": "accounting",
                "url": "https://x.example/c/3",
                "weeks": 3,
                "price": 99,
                "start": dt.date(2026, 8, 1),
                "summary": "ledgers and more ledgers",
                "tags": ["fin"],
                "level": "advanced",
            },
        ],
        "note": "line one\nline two",
        "html": "<i>x</i>",
        "headline": "News & more",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "fr"])
def test_an_open_edx_style_template_renders_byte_identical_to_plain_django(language):
    context = _open_edx_context()
    with translation.override(language):
        expected = plain(OPEN_EDX_STYLE, context)
        assert sandboxed(OPEN_EDX_STYLE, context) == expected
    assert "Zoë &lt;b&gt;" in expected and "data structures: 1 week" in expected
    assert "News &amp; more" in expected  # the include


# ----------------------------------------------------------------------------------------------
# V4: bounded rendering
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        '{{ "x"|ljust:"300000000" }}',
        '{{ "x"|rjust:"300000000" }}',
        '{{ "x"|center:"300000000" }}',
        '{{ "x"|wordwrap:"300000000" }}',
        '{{ 1|floatformat:"100000" }}',
        '{{ 1|floatformat:"-100000g" }}',
        '{{ 1|stringformat:"300000000s" }}',
        '{{ 1|stringformat:".300000000f" }}',
        "{% lorem 100000000 w %}",
    ],
)
def test_amplifying_literal_arguments_are_refused_at_compile_time(source):
    with pytest.raises(TemplateSyntaxError) as info:
        compile_template(source, engine=ENGINE)
    assert "Line 1" in str(info.value)


def test_a_width_from_a_variable_is_refused_at_render_time_before_the_work():
    """The preview of {{ "x"|ljust:"300000000" }} returned 300 MB after 28 s (V4)."""
    started = time.monotonic()
    with pytest.raises(TemplateLimitError, match=r"ljust:300000000 is over the limit of 1000"):
        sandboxed("{{ x|ljust:width }}", {"x": "x", "width": "300000000"})
    assert time.monotonic() - started < 1
    assert sandboxed("[{{ x|ljust:width }}]", {"x": "x", "width": "5"}) == "[x    ]"


def test_a_limit_error_fails_the_message_as_a_channel_error():
    assert issubclass(TemplateLimitError, FatalChannelDeliveryError)


def test_nested_loops_stop_at_the_time_limit(settings):
    """Five nested loops timed the web worker out (V4)."""
    settings.CAMPAIGNS_TEMPLATE_MAX_RENDER_SECONDS = 0.3
    loops = "".join(f"{{% for v{i} in s %}}" for i in range(5)) + "x" + "{% endfor %}" * 5
    started = time.monotonic()
    with pytest.raises(TemplateLimitError, match=r"longer than the limit of 0\.3 s"):
        sandboxed(loops, {"s": "y" * 100})
    assert time.monotonic() - started < 2


def test_empty_nested_loops_stop_too(settings):
    settings.CAMPAIGNS_TEMPLATE_MAX_RENDER_SECONDS = 0.3
    source = "{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(TemplateLimitError):
        sandboxed(source, {"s": "y" * 1000})
    assert time.monotonic() - started < 2


def test_a_template_that_hit_the_time_limit_fails_at_once_for_a_while(settings, monkeypatch):
    """A batch must not spend the limit on each of its 500 messages."""
    settings.CAMPAIGNS_TEMPLATE_MAX_RENDER_SECONDS = 0.2
    template = compile_template(
        "{% for a in s %}{% for b in s %}{% for c in s %}{{ a }}"
        "{% endfor %}{% endfor %}{% endfor %}",
        engine=ENGINE,
    )
    with pytest.raises(TemplateLimitError):
        template.render(Context({"s": "y" * 500}))
    started = time.monotonic()
    with pytest.raises(TemplateLimitError, match="not rendered again yet"):
        template.render(Context({"s": ""}))
    assert time.monotonic() - started < 0.1
    monkeypatch.setattr(sandbox, "SLOW_TEMPLATE_SECONDS", 0.0)
    assert template.render(Context({"s": "ab"})) == "aaaabbbb"


@pytest.mark.parametrize(
    "source",
    [
        "{% for a in s %}{% for b in s %}{{ a }}{{ b }}{% endfor %}{% endfor %}",
        "{% for a in s %}{% for b in s %}xxxxxxxxxx{% endfor %}{% endfor %}",
        "{% with a=s|add:s %}{% with b=a|add:a %}{% with c=b|add:b %}{% with d=c|add:c %}"
        "{% with e=d|add:d %}{% with f=e|add:e %}{{ f|length }}"
        "{% endwith %}{% endwith %}{% endwith %}{% endwith %}{% endwith %}{% endwith %}",
        "{{ s|make_list|join:s }}",
        "{{ s }}" * 40,
    ],
)
def test_output_is_bounded_while_it_is_produced(settings, source):
    settings.CAMPAIGNS_TEMPLATE_MAX_OUTPUT_BYTES = 10_000
    with pytest.raises(TemplateLimitError, match="over the limit of 10000 bytes"):
        sandboxed(source, {"s": "y" * 300})


def test_output_limit_counts_utf8_bytes(settings):
    settings.CAMPAIGNS_TEMPLATE_MAX_OUTPUT_BYTES = 100
    assert sandboxed("{{ s }}", {"s": "é" * 50}) == "é" * 50  # 100 bytes: at the limit
    with pytest.raises(TemplateLimitError):
        sandboxed("{{ s }}", {"s": "é" * 51})


@pytest.mark.django_db
def test_default_limits_leave_normal_templates_alone():
    context = _open_edx_context()
    context["courses"] = context["courses"] * 100
    assert len(sandboxed(OPEN_EDX_STYLE, context)) > 50_000


def test_deeply_nested_tags_are_refused_at_compile_time():
    source = "{% if x %}" * 60 + "{% endif %}" * 60
    with pytest.raises(TemplateSyntaxError, match="nested more than 50 deep"):
        compile_template(source, engine=ENGINE)
    source = "{% if x %}" * 2000 + "{% endif %}" * 2000
    with pytest.raises(TemplateSyntaxError):
        compile_template(source, engine=ENGINE)


def test_limits_have_defaults_and_follow_the_settings(settings):
    from campaigns import conf

    assert (
        conf.template_max_output_bytes(),
        conf.template_max_render_seconds(),
        conf.template_max_include_depth(),
        conf.template_max_filter_width(),
    ) == (1_000_000, 2.0, 5, 1000)
    settings.CAMPAIGNS_TEMPLATE_MAX_FILTER_WIDTH = 3
    with pytest.raises(TemplateLimitError, match="over the limit of 3"):
        sandboxed("{{ x|ljust:w }}", {"x": "a", "w": "4"})


def test_celery_tasks_have_soft_and_hard_time_limits(settings):
    from campaigns import tasks

    assert (settings.CELERY_TASK_SOFT_TIME_LIMIT, settings.CELERY_TASK_TIME_LIMIT) == (300, 360)
    for task in (
        tasks.start_run,
        tasks.deliver_batch,
        tasks.record_outcomes,
        tasks.recover_stalled_runs,
    ):
        assert (task.soft_time_limit, task.time_limit) == (300, 360), task.name
