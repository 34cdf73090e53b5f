"""ace.batch_render: what is rendered once per batch, and the proof that nothing changes.

The generated test renders random templates (loops, conditions, with, filters, trans/blocktrans
with and without variables and plurals, autoescape, cycle, firstof, include, extends/block...)
for random shared and per-recipient contexts twice, from two identical copies of the messages:
in full, and through :class:`ace.batch_render.RenderBatch`; every output must be the same string
of the same type (or the same error).
"""

from __future__ import annotations

import copy
import datetime as dt
import random
from pathlib import Path

import pytest
from ace_stubs import make_message
from django.template import Library, TemplateSyntaxError
from django.template.backends.django import DjangoTemplates
from django.template.base import Template
from django.utils import translation
from django.utils.safestring import mark_safe

from ace import batch_render
from ace.batch import BatchSender
from ace.batch_render import RenderBatch, _BatchTemplate, _Cached
from ace.message import MessageType
from ace.recipient import Recipient
from ace.renderers import AbstractRenderer

BENCH_TEMPLATES = Path(__file__).resolve().parents[2] / "bench" / "templates"
CASES = 400
INCLUDES = {
    "inc/a.html": "{% load i18n %}[{{ s_str }}|{{ p_name }}|{% for i in s_list %}{{ i }},"
    "{% endfor %}{% trans 'Yes' %}]",
    "inc/b.html": "<{{ v|default:'none' }}:{{ s_num }}:{{ p_num }}>",
    "inc/c.html": "{% load i18n %}{% blocktrans with n=s_num %}n={{ n }}{% endblocktrans %}",
    "base/p.html": "<html>{% block content %}base{% endblock %}{{ s_str }}</html>",
}
SHARED = ("s_str", "s_html", "s_num", "s_float", "s_list", "s_dict", "s_date", "s_none", "s_items")
PERSONAL = ("p_name", "p_num", "p_flag", "p_list")
OTHER = ("missing", "message", "True", "forloop")
FILTERS = (
    *("upper", "lower", "length", 'default:"-"', "escape", "safe", 'join:", "', "first", "last"),
    *("yesno", "floatformat:1", 'date:"D d M Y"', 'add:"1"', "truncatechars:5", "linebreaksbr"),
    *("pluralize", 'stringformat:"s"', 'slice:":2"', "force_escape", "title", 'dictsort:"n"'),
)
WORDS = ("Monday", "Yes", "No", "January", "Today", "Hello, world", "Unsubscribe")
TEXTS = ("Hello ", "<p>", " & ", "\n", "é", "50 %", " ", "</p>\n  ")


def tag(body: str) -> str:
    return "{% " + body + " %}"


def var(expr: str) -> str:
    return "{{ " + expr + " }}"


class DictRenderer(AbstractRenderer):
    """The real render path (one context dict per message, shared by its templates)."""

    rendered_message_cls = dict


class Channel:
    action_links = [("https://x.test/view", "View online")]


def engine(autoescape: bool = True) -> DjangoTemplates:
    loaders = [("django.template.loaders.locmem.Loader", INCLUDES)]
    return DjangoTemplates(
        {
            "NAME": f"batch-render-{autoescape}",
            "DIRS": [],
            "APP_DIRS": False,
            "OPTIONS": {"loaders": loaders, "autoescape": autoescape},
        }
    )


ENGINES = {True: engine(True), False: engine(False)}


class Generator:
    """Random template sources over the names above (``local``: bound by enclosing tags)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.blocks = rng, 0

    def name(self, local: tuple) -> str:
        return self.rng.choice((*SHARED, *PERSONAL, *OTHER, *local, *local))

    def expr(self, local: tuple) -> str:
        rng, name = self.rng, self.name(local)
        name += {
            "message": rng.choice([".uuid", ".name", ".language"]),
            "s_dict": rng.choice(["", ".key", ".n", ".items", ".nope"]),
            "s_items": rng.choice(["", ".0.title", ".0"]),
            "s_list": rng.choice(["", ".0", ".1", "", "", "", ".pop" * (rng.random() < 0.05)]),
            "p_list": rng.choice(["", ".0"]),
            "forloop": rng.choice([".counter", ".first", ".last", ".parentloop.counter"]),
        }.get(name, "")
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            name += "|" + rng.choice(FILTERS)
        return name

    def cond(self, local: tuple) -> str:
        a, b = self.expr(local), self.expr(local)
        return self.rng.choice([a, f"not {a}", f"{a} == {b}", f"{a} in {b}", f"{a} is None",
                                f"{a} and {b}", f"{a}|length > 1"])  # fmt: skip

    def simple(self, local: tuple) -> str:
        return self.rng.choice([n for n in (*SHARED, *PERSONAL, "missing", *local) if "." not in n])

    def nodes(self, depth: int, local: tuple = (), count: int | None = None) -> str:
        return "".join(self.node(depth, local) for _ in range(count or self.rng.randint(1, 4)))

    def node(self, depth: int, local: tuple) -> str:
        rng, inner = self.rng, depth - 1
        kinds = ["text"] * 4 + ["var"] * 4 + ["trans", "blocktrans", "firstof", "include", "lang"]
        if depth > 0:
            kinds += ["if", "for", "for", "with", "autoescape", "spaceless", "filter", "block"]
        kinds += ["cycle", "ifchanged"] if "forloop" in local else ["cycle_as", "now"]
        kind = rng.choice(kinds)
        e, body = (lambda: self.expr(local)), (lambda: self.nodes(inner, local))
        if kind == "text":
            return rng.choice(TEXTS)
        if kind == "var":
            return var(e())
        if kind == "trans":
            return tag(f'trans "{rng.choice(WORDS)}"')
        if kind == "blocktrans":
            a, b, end = self.simple(local), self.simple(local), tag("endblocktrans")
            return rng.choice([
                tag(f"blocktrans{rng.choice(['', ' trimmed'])}") + f"Hi {var(a)}, {var(b)}!" + end,
                tag(f"blocktrans with w={e()}") + f"W {var('w')}" + end,
                tag(f"blocktrans count counter={e()}|length") + f"{var('counter')} day of "
                + var(a) + tag("plural") + f"{var('counter')} days" + end,
                tag('blocktrans context "month"') + "May" + end,
                # the with-values are evaluated outside: q is the recipient's p_name
                tag("blocktrans with p_name=s_str q=p_name") + var("p_name") + var("q") + end,
            ])  # fmt: skip
        if kind == "firstof":
            return tag(f"firstof {e()} {e()} 'none'")
        if kind == "include":
            return rng.choice([tag('include "inc/a.html"'), tag('include "inc/c.html"'),
                               tag(f'include "inc/b.html" with v={e()}'),
                               tag(f'include "inc/b.html" with v={e()} only')])  # fmt: skip
        if kind == "lang":
            return tag("get_current_language as LANG") + var("LANG")
        if kind in ("cycle", "cycle_as"):
            return tag("cycle 'odd' 'even'") if kind == "cycle" else tag("cycle 'a' 'b' as cv")
        if kind == "ifchanged":
            return tag("ifchanged") + var(e()) + tag("endifchanged")
        if kind == "now":
            return tag('now "Y"')
        if kind == "if":
            return (tag(f"if {self.cond(local)}") + body() + tag(f"elif {self.cond(local)}")
                    + body() + tag("else") + body() + tag("endif"))  # fmt: skip
        if kind == "for":
            if rng.random() < 0.2:
                inside = self.nodes(inner, (*local, "k", "v", "forloop"))
                return tag("for k, v in s_dict.items") + inside + tag("endfor")
            name = f"x{depth}"
            seq = rng.choice(["s_list", "p_list", "s_items", "s_str", "missing", "s_items"])
            inside = self.nodes(inner, (*local, name, f"{name}.title", f"{name}.url", "forloop"))
            empty = tag("empty") + body()
            return tag(f"for {name} in {seq}") + inside + empty + tag("endfor")
        if kind == "with":
            inside = self.nodes(inner, (*local, f"w{depth}"))
            return tag(f"with w{depth}={e()}") + inside + tag("endwith")
        if kind in ("autoescape", "spaceless", "filter"):
            start = {"autoescape": f"autoescape {rng.choice(['on', 'off'])}", "spaceless":
                     "spaceless", "filter": "filter upper"}[kind]  # fmt: skip
            return tag(start) + "<p> " + body() + " </p>" + tag(f"end{kind}")
        self.blocks += 1
        return tag(f"block b{self.blocks}") + body() + tag("endblock")

    def template(self) -> str:
        body = self.nodes(3, count=self.rng.randint(2, 6))
        if self.rng.random() < 0.08:
            head = '{% extends "base/p.html" %}{% load i18n %}{% block content %}'
            return head + body + "{% endblock %}"
        return "{% load i18n %}" + body


def contexts(rng: random.Random, count: int) -> tuple[dict, list[dict]]:
    """A shared context and ``count`` per-recipient ones, with the awkward cases mixed in."""
    shared = {
        "s_str": rng.choice(["Bench", "a & b", "<i>x</i>", "Ünïcode", "", "line\nbreak"]),
        "s_html": mark_safe(rng.choice(["<b>safe</b>", "&amp;"])),
        "s_num": rng.choice([0, 1, 2, 17, -3]),
        "s_float": rng.choice([0.0, -0.0, 1.5, 2.25]),
        "s_list": rng.sample(["a", "b", "<c>", 1, 2], rng.randint(0, 4)),
        "s_dict": {"key": rng.choice(["k", "<k>"]), "n": rng.randint(0, 3), "items": [1, 2]},
        "s_date": dt.date(2026, rng.randint(1, 12), rng.randint(1, 28)),
        "s_none": None,
        "s_items": [
            {"title": f"T{i} & co", "url": f"https://x.test/{i}?a=1&b=2", "n": rng.randint(0, 5)}
            for i in range(rng.randint(0, 3))
        ],
    }
    personal = []
    for index in range(count):
        user = {
            "p_name": rng.choice(["Ann", "<Bob>", "", "Zoé"]) + str(index % 3),
            "p_num": rng.randint(0, 3),
            "p_flag": rng.random() < 0.5,
            "p_list": [index, "x"][: rng.randint(0, 2)],
        }
        if rng.random() < 0.1:
            del user["p_flag"]  # absent from some messages
        if rng.random() < 0.05:
            user[rng.choice(SHARED)] = f"override {index}"  # a shared name set per recipient
        personal.append(user)
    return shared, personal


def messages_for(rng: random.Random, shared: dict, personal: list[dict], language: str) -> list:
    msg_type = MessageType(context=shared, app_label="testapp", name="generated")
    messages = [
        msg_type.personalize(Recipient(lms_user_id=i, email_address=f"u{i}@x.test"), language, c)
        for i, c in enumerate(personal)
    ]
    twist = rng.random()
    if twist < 0.15:  # equal values that are not the same objects: still shared
        messages[-1].context["s_list"] = copy.deepcopy(shared["s_list"])
        messages[-1].context["s_items"] = copy.deepcopy(shared["s_items"])
    elif twist < 0.25:  # equal but not alike: 1 and 1.0 and True render differently
        messages[-1].context["s_num"] = rng.choice([float(shared["s_num"]), shared["s_num"] == 1])
    elif twist < 0.3:
        messages[-1].context["s_float"] = -shared["s_float"]  # 0.0 and -0.0

    return messages


def render_all(templates: dict, messages: list, batch: bool) -> tuple[list, dict]:
    renderer, channel = DictRenderer(), Channel()
    if batch:
        templates = RenderBatch(messages).templates(templates, channel, messages[0])
    outputs = []
    for message in messages:
        try:
            rendered = renderer.render_templates(templates, channel, message)
            outputs.append({k: (type(v), v) for k, v in rendered.items()})
        except Exception as error:  # the same error, at the same message, in both worlds
            outputs.append((type(error), str(error)))
    return outputs, templates


def test_generated_templates_render_byte_identical():
    hoisted = compiled = 0
    for case in range(CASES):
        rng = random.Random(20261201 + case)
        generator = Generator(rng)
        sources = [generator.template() for _ in range(rng.randint(1, 3))]
        backend = ENGINES[rng.random() < 0.8]
        try:
            templates = {f"t{i}": backend.from_string(s) for i, s in enumerate(sources)}
        except TemplateSyntaxError:
            continue
        compiled += 1
        shared, personal = contexts(rng, rng.randint(2, 7))
        language = rng.choice(["en", "fr", "de"])
        with translation.override(language):
            messages = messages_for(rng, shared, personal, language)
            twin = copy.deepcopy(messages)  # the same world, rendered the other way
            expected, _ = render_all(templates, messages, batch=False)
            actual, planned = render_all(templates, twin, batch=True)
        assert actual == expected, f"case {case}: {sources}"
        hoisted += any(isinstance(t, _BatchTemplate) for t in planned.values())
    assert compiled >= CASES * 0.9
    assert hoisted >= compiled * 0.3  # the test is not vacuous: shared parts were hoisted


# The files of the benchmark and of the other ACE tests, through BatchSender -----------------


@pytest.fixture
def bench_templates(settings, ace_templates):
    settings.TEMPLATES[0]["DIRS"] = [*settings.TEMPLATES[0]["DIRS"], BENCH_TEMPLATES]


def _personalized(name: str, app_label: str, count: int, shared: dict, per) -> list:
    msg_type = MessageType(context=shared, app_label=app_label, name=name)
    return [
        msg_type.personalize(Recipient(lms_user_id=i, email_address=f"u{i}@x.test"), "en", per(i))
        for i in range(count)
    ]


BENCH_SHARED = {
    "platform_name": "Bench",
    "campaign_slug": "weekly",
    "items": [
        {"title": f"Course {i} & more", "summary": "S", "url": f"https://x.test/{i}",
         "start": "1 June", "effort": i}
        for i in range(5)
    ],
}  # fmt: skip


def _bench_user(i):
    return {"first_name": f"Learner{i}", "username": f"l{i}", "unsubscribe_url": f"https://u/{i}"}


@pytest.mark.usefixtures("bench_templates")
@pytest.mark.parametrize(
    ("app_label", "name", "shared", "per"),
    [
        ("bench", "benchmail", BENCH_SHARED, _bench_user),
        ("bench", "benchmail_worst", BENCH_SHARED, _bench_user),
        ("testapp", "testmessage", {"topic": "batch", "items": ["a", "<b>"]}, _bench_user),
        ("testapp", "testmessage", {"topic": "x", "name": "all"}, lambda i: {"omit": i % 2}),
    ],
)
def test_file_templates_render_the_same_through_batch_sender(
    stub_email, settings, app_label, name, shared, per
):
    messages = _personalized(name, app_label, 12, shared, per)
    for index, message in enumerate(messages):
        message.language = ("en", "fr")[index % 2]
    results = []
    for enabled in (False, True):
        settings.ACE_BATCH_RENDER = enabled
        with BatchSender() as sender:
            prepared, decided = sender.prepare(copy.deepcopy(messages))
        assert not decided
        results.append([(item.message.recipient, item.rendered) for item in prepared])
    assert results[0] == results[1]


@pytest.mark.usefixtures("bench_templates")
def test_the_typical_loop_renders_once_and_the_worst_case_keeps_it_per_recipient():
    from ace.presentation import get_renderer

    channel = Channel()
    channel.channel_type = stub_channel_type()
    renderer = get_renderer(channel.channel_type)
    shapes = {}
    for name in ("benchmail", "benchmail_worst"):
        messages = _personalized(name, "bench", 3, BENCH_SHARED, _bench_user)
        with translation.override("en"):
            templates = renderer.get_templates(channel, messages[0])
            planned = RenderBatch(messages).templates(templates, channel, messages[0])
        body = planned["body_html"].shadow.nodelist
        shapes[name] = [type(node).__name__ for node in body]
        if name == "benchmail_worst":
            (loop,) = [node for node in body if type(node).__name__ == "ForNode"]
            assert any(isinstance(n, _Cached) for n in loop.nodelist_loop)  # {% trans %} inside
        assert not isinstance(planned["subject"], _BatchTemplate)  # first_name in the plural
    assert "ForNode" not in shapes["benchmail"]  # the loop is in a cached run
    assert "ForNode" in shapes["benchmail_worst"]


def stub_channel_type():
    from ace.channel import ChannelType

    return ChannelType.EMAIL


# What is not known renders in full ------------------------------------------------------------


def _plan(source: str):
    templates = {"t": ENGINES[True].from_string(source)}
    shared = {"s_str": "x", "s_list": [1, 2]}
    messages = _personalized("generated", "testapp", 2, shared, lambda i: {"p_name": "ab"[i]})
    return templates, RenderBatch(messages).templates(templates, Channel(), messages[0]), messages


tags = Library()


@tags.simple_tag(takes_context=True)
def context_tag(context):
    return context.get("s_str")


@tags.simple_tag
def plain_tag(value):
    return f"<{value}>"


@tags.filter
def custom_filter(value):
    return f"[{value}]"


ENGINES[True].engine.template_libraries["batchtest"] = tags


@pytest.mark.parametrize(
    "source",
    [
        "{% load batchtest %}{% context_tag %}{{ s_str }}",  # a custom tag taking the context
        '{% extends "base/p.html" %}{% block content %}{{ s_str }}{% endblock %}',
        "{{ s_list.pop }}{{ s_str }}",  # a lookup that changes a list
        "{% load batchtest %}{{ s_list|custom_filter }}{{ s_str }}",  # custom code gets a list
        "{% include s_str %}",  # an include of a variable
    ],
)
def test_what_is_not_known_renders_in_full(source):
    templates, planned, _messages = _plan(source)
    assert planned is templates


def test_custom_code_gets_immutable_values_only_and_they_stay_per_recipient():
    source = "{% load batchtest %}{% plain_tag s_str %}{{ s_str|custom_filter }}|{{ s_list }}"
    templates, planned, messages = _plan(source)
    shadow = planned["t"].shadow.nodelist
    assert [type(n).__name__ for n in shadow][-2:] == ["VariableNode", "_Cached"]
    for message in messages:
        context = {"message": message, "channel": Channel(), **message.context}
        assert planned["t"].render(context) == templates["t"].render(context)


def test_a_template_class_not_known_renders_in_full():
    class Sandboxed(Template):
        pass

    templates, _planned, messages = _plan("{{ s_str }}")
    templates["t"].template.__class__ = Sandboxed
    planned = RenderBatch(messages).templates(templates, Channel(), messages[0])
    assert planned is templates


def test_a_shared_value_changed_after_planning_renders_in_full():
    templates, planned, messages = _plan("{% for i in s_list %}<{{ i }}>{% endfor %}{{ p_name }}")
    assert isinstance(planned["t"], _BatchTemplate)
    renders = []
    for message in messages:
        context = {"message": message, "channel": None, **message.context}
        renders.append((planned["t"].render(context), templates["t"].render(context)))
        message.context["s_list"].append(3)  # e.g. a policy appending in place
    assert [a for a, b in renders] == [b for a, b in renders] == ["<1><2>a", "<1><2><3>b"]


def test_another_language_or_time_zone_renders_in_full(settings):
    from django.utils import timezone

    templates, planned, messages = _plan('{% load i18n %}{% trans "Monday" %}')
    context = {"message": messages[0], **messages[0].context}
    assert planned["t"].render(dict(context)) == "Monday"
    with translation.override("fr"):
        assert planned["t"].render(dict(context)) == "lundi"
    with timezone.override("Asia/Tokyo"):
        assert planned["t"].render(dict(context)) == templates["t"].render(dict(context))


def test_turned_off_or_failing_planning_renders_in_full(settings, monkeypatch, caplog):
    settings.ACE_BATCH_RENDER = False
    templates, planned, _messages = _plan("{{ s_str }}")
    assert planned is templates
    settings.ACE_BATCH_RENDER = True

    def broken(self, templates):
        raise RuntimeError("bug")

    monkeypatch.setattr(batch_render._Planner, "plan", broken)
    templates, planned, _messages = _plan("{{ s_str }}")
    assert planned is templates
    assert "renders in full" in caplog.text


def test_shared_and_per_recipient_names_in_the_same_message():
    messages = [
        make_message(context={"shared": "same", "who": f"user {i}"}, language="en")
        for i in range(3)
    ]
    backend = ENGINES[True]
    templates = {"t": backend.from_string("{{ shared }}/{{ who }}/{{ message.uuid }}")}
    planned = RenderBatch(messages).templates(templates, Channel(), messages[0])
    for message in messages:
        context = {"message": message, "channel": None, **message.context}
        assert planned["t"].render(context) == f"same/{message.context['who']}/{message.uuid}"
