"""
:mod:`ace.batch_render` renders once per batch what does not depend on the recipient (for
:class:`ace.batch.BatchSender`; README "Performance" has the design).

Per template set and group of messages, the *stable* names are those holding the same plain data
in every message that no tag sets and no custom code gets. Each template gets a shadow copy where
every maximal run of known, side-effect-free nodes reading only stable names renders once and
then answers with that output; containers that mix keep such runs inside. Anything unknown (a
tag taking the context, ``{% extends %}``, a sandboxed template, a ``pop`` lookup...) sends the
whole set back to full renders, and each render first compares the stable names with a snapshot.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import operator
import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.template import TemplateDoesNotExist, TemplateSyntaxError, defaultfilters, smartif
from django.template import defaulttags as dtags
from django.template import loader_tags as ltags
from django.template.backends.django import Template as BackendTemplate
from django.template.backends.django import reraise
from django.template.base import (
    FilterExpression,
    Node,
    NodeList,
    Template,
    TextNode,
    Variable,
    VariableNode,
)
from django.template.context import make_context
from django.template.library import InclusionNode, SimpleBlockNode, SimpleNode
from django.templatetags import i18n, l10n, static, tz
from django.utils import timezone, translation
from django.utils.safestring import SafeString

from ace.templatetags import acetags

log = logging.getLogger(__name__)

_MISSING = object()
_MUTATORS = frozenset({"pop", "popitem", "clear", "reverse", "sort"})  # change lists or dicts
_CLOCK = frozenset({"now", "today", "utcnow"})  # {{ a_date.today }} reads the clock
_ATOMS = (str, SafeString, int, bool, float, type(None), Decimal, dt.date, dt.datetime, dt.time)
_ATOMS += (uuid.UUID,)
_MAX_ITEMS = 5000  # bigger shared values stay per recipient (each render compares them)
_PURE_FILTERS = {
    func
    for library in (defaultfilters, i18n, l10n, tz)
    for name, func in library.register.filters.items()
    if name not in ("random", "timesince", "timeuntil")
}
_IDENTITY = object()  # {% if a is b %} among the filters: a snapshot does not keep identity
_PURE_FILTERS -= {defaultfilters.dictsort, defaultfilters.dictsortreversed}  # call lookups
_KNOWN_FILTERS = {*_PURE_FILTERS, *defaultfilters.register.filters.values(), _IDENTITY}
_KNOWN_FILTERS -= {defaultfilters.dictsort, defaultfilters.dictsortreversed}
#: Tags that take the context -> the names they read (they change nothing).
_CONTEXT_TAGS = {acetags.get_action_links: ("channel", "omit_unsubscribe_link")}
# PURE: the output is a function of what the node reads; DYNAMIC: rendered every time, nothing
# cached inside (its children are only checked for what they set or hand out).
PURE, DYNAMIC = "pure", "dynamic"


class _Opaque(Exception):
    """Something whose effects are not known: the whole template set renders in full."""


class _Spec:
    """What a node evaluates (``exprs``; ``inner``: (binds, expressions evaluated with them)),
    reads, sets, hands to custom code and contains (``children``: (key, nodelist, binds)); binds
    map a name to its expression, None (it varies) or [expression] (per loop iteration)."""

    def __init__(self, kind=PURE, exprs=(), names=(), assigns=(), children=(), **extra):
        self.assigns = [name for name in assigns if name]
        self.kind = DYNAMIC if self.assigns else kind  # a tag setting a variable always runs
        self.exprs, self.names, self.children = exprs, names, children
        self.exposes, self.inner = extra.get("exposes", ()), extra.get("inner", ({}, ()))


def _body(node, attr="nodelist", binds=None):
    return (attr, getattr(node, attr), binds or {})


_LEAF, _BOX, _SETS = (PURE, (), (), None, ()), (PURE, (), (), None, ("nodelist",)), "variable"
_GETS = (DYNAMIC, (), (), _SETS, ())
# class: (kind, expression attributes ("*": several), names read, assigned attribute, children)
_TABLE: dict[type, tuple] = {
    **dict.fromkeys((TextNode, dtags.CommentNode, dtags.LoadNode, dtags.VerbatimNode), _LEAF),
    **dict.fromkeys((dtags.AutoEscapeControlNode, dtags.SpacelessNode), _BOX),
    **dict.fromkeys((l10n.LocalizeNode, tz.LocalTimeNode), _BOX),
    dtags.TemplateTagNode: _LEAF,
    dtags.CsrfTokenNode: (DYNAMIC, (), ("csrf_token",), None, ()),
    dtags.NowNode: (DYNAMIC, (), (), "asvar", ()),
    dtags.LoremNode: (DYNAMIC, ("count",), (), None, ()),
    dtags.URLNode: (DYNAMIC, ("view_name", "*args", "*kwargs"), (), "asvar", ()),
    VariableNode: (PURE, ("filter_expression",), (), None, ()),
    dtags.FirstOfNode: (PURE, ("*vars",), (), "asvar", ()),
    dtags.WidthRatioNode: (PURE, ("val_expr", "max_expr", "max_width"), (), "asvar", ()),
    dtags.CycleNode: (DYNAMIC, ("*cyclevars",), (), "variable_name", ()),
    dtags.IfChangedNode: (DYNAMIC, ("*_varlist",), (), None, ("nodelist_true", "nodelist_false")),
    i18n.TranslateNode: (PURE, ("filter_expression", "message_context"), (), "asvar", ()),
    i18n.LanguageNode: (DYNAMIC, ("language",), (), None, ("nodelist",)),
    i18n.GetLanguageInfoNode: (DYNAMIC, ("lang_code",), (), _SETS, ()),
    i18n.GetLanguageInfoListNode: (DYNAMIC, ("languages",), (), _SETS, ()),
    **dict.fromkeys((i18n.GetAvailableLanguagesNode, i18n.GetCurrentLanguageNode), _GETS),
    **dict.fromkeys((i18n.GetCurrentLanguageBidiNode, tz.GetCurrentTimezoneNode), _GETS),
    tz.TimezoneNode: (DYNAMIC, ("tz",), (), None, ("nodelist",)),
    static.StaticNode: (DYNAMIC, ("path",), (), "varname", ()),
    static.PrefixNode: (DYNAMIC, (), (), "varname", ()),
}


def _from_table(n):
    kind, attrs, names, assigned, kids = _TABLE[type(n)]
    exprs = [getattr(n, a) for a in attrs if a[0] != "*"]
    for attr in (a[1:] for a in attrs if a[0] == "*"):
        exprs.extend(getattr(n, attr).values() if attr == "kwargs" else getattr(n, attr))
    assigns = (getattr(n, assigned),) if assigned else ()
    return _Spec(kind, exprs, names, assigns, tuple(_body(n, a) for a in kids))


def _blocktrans(n):
    names = {t.contents for t in [*n.singular, *(n.plural or [])] if t.token_type.name == "VAR"}
    names -= {*n.extra_context, n.countervar}
    exprs = (*n.extra_context.values(), n.message_context)
    inner = (n.extra_context, (n.counter,))  # the counter sees the with-names
    return _Spec(PURE, exprs, tuple(names), (n.asvar,), inner=inner)


def _library_tag(n):
    exprs = (*n.args, *n.kwargs.values())
    if n.takes_context and n.func not in _CONTEXT_TAGS:
        raise _Opaque(n)
    names, exposes = (_CONTEXT_TAGS[n.func], ()) if n.takes_context else ((), exprs)
    kids = (_body(n),) if type(n) is SimpleBlockNode else ()
    return _Spec(DYNAMIC, exprs, names, (getattr(n, "target_var", None),), kids, exposes=exposes)


def _for(n):
    each = {name: [n.sequence] for name in [*n.loopvars, "forloop"]}
    kids = (_body(n, "nodelist_loop", each), _body(n, "nodelist_empty"))
    return _Spec(PURE, (n.sequence,), ("forloop",), children=kids)


def _if(n):
    pairs = n.conditions_nodelists
    kids = tuple((i, nodelist, {}) for i, (_c, nodelist) in enumerate(pairs))
    return _Spec(PURE, [c for c, _n in pairs if c is not None], children=kids)


_SPECS: dict[type, Any] = {
    **dict.fromkeys(_TABLE, _from_table),
    **dict.fromkeys((SimpleNode, SimpleBlockNode, InclusionNode), _library_tag),
    dtags.IfNode: _if,
    dtags.ForNode: _for,
    dtags.WithNode: lambda n: _Spec(
        PURE, n.extra_context.values(), children=(_body(n, binds=n.extra_context),)
    ),
    # "var" holds the output of the children, stable when they are: the literal "" stands for it
    dtags.FilterNode: lambda n: _Spec(children=(_body(n),), inner=({"var": ""}, (n.filter_expr,))),
    dtags.RegroupNode: lambda n: _Spec(
        DYNAMIC, (n.target,), (), (n.var_name,), inner=({n.var_name: None}, (n.expression,))
    ),
    ltags.BlockNode: lambda n: _Spec(children=(_body(n, binds={"block": None}),)),
    i18n.BlockTranslateNode: _blocktrans,
}


def _spec(node: Node) -> _Spec:
    handler = _SPECS.get(type(node))
    if handler is None or "render" in vars(node) or "render_annotated" in vars(node):
        raise _Opaque(node)
    return handler(node)


def _parts(expr: Any) -> tuple[list[Variable], list[tuple[Any, list]]]:
    """(variables, [(filter, arguments)]) of an expression or an ``{% if %}`` condition."""
    variables: list[Variable] = []
    filters: list[tuple[Any, list]] = []
    stack = [expr]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is Variable:
            variables.append(item)
        elif kind is FilterExpression:
            stack.append(item.var)
            for func, args in item.filters:
                filters.append((func, args))
                stack.extend(arg for is_lookup, arg in args if is_lookup)
        elif kind is dtags.TemplateLiteral:
            stack.append(item.value)
        elif isinstance(item, smartif.TokenBase) and kind.__module__ == smartif.__name__:
            stack.extend((getattr(item, "first", None), getattr(item, "second", None)))
            if item.id in ("is", "is not"):
                filters.append((_IDENTITY, []))
        elif item is not None and kind not in _ATOMS:
            raise _Opaque(item)
    return variables, filters


def _snapshot(value: Any, budget: list[int]) -> Any:
    """A deep copy of plain data; ``_MISSING`` for anything else or too many items."""
    budget[0] -= 1
    kind = type(value)
    if budget[0] < 0 or kind not in (*_ATOMS, dict, list, tuple):
        return _MISSING
    if kind is dict:
        items = [(_snapshot(k, budget), _snapshot(v, budget)) for k, v in value.items()]
        return _MISSING if any(_MISSING in pair for pair in items) else dict(items)
    if kind is list or kind is tuple:
        items = [_snapshot(v, budget) for v in value]
        return _MISSING if _MISSING in items else kind(items)
    return value


def _same(a: Any, b: Any) -> bool:
    """Whether two plain values render alike everywhere (types, order, float signs...)."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        return len(a) == len(b) and all(map(_same, a.items(), b.items()))
    if kind is list or kind is tuple:
        return len(a) == len(b) and all(map(_same, a, b))
    if a is b:
        return True
    if kind is float or kind is Decimal:
        return repr(a) == repr(b)
    if kind is dt.datetime or kind is dt.time:
        return a == b and a.tzinfo is b.tzinfo and a.fold == b.fold
    return kind in _ATOMS and a == b


class _Cached(Node):
    """A run of nodes rendered for real once, then answered with that first output."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodelist, self.output = NodeList(nodes), None
        self.token, self.origin = nodes[0].token, getattr(nodes[0], "origin", None)

    def render(self, context: Any) -> str:
        if self.output is None:
            self.output = "".join([node.render_annotated(context) for node in self.nodelist])
        return self.output

    render_annotated = render  # the nodes inside annotate their own errors


class _BatchTemplate:
    """Renders as the backend template it stands for, through the shadow when it may."""

    def __init__(self, original: BackendTemplate, nodelist: NodeList, plan: _Planner) -> None:
        self.original, self.backend = original, original.backend
        self.shadow = copy.copy(original.template)
        self.shadow.nodelist = nodelist
        self.expected = {name: plan.expected[name] for name in plan.used}
        self.language, self.timezone = plan.language, plan.timezone

    def render(self, context: Any = None, request: Any = None) -> str:
        if (
            request is not None
            or type(context) is not dict
            or translation.get_language() != self.language
            or timezone.get_current_timezone() is not self.timezone
            or not all(_same(context.get(k, _MISSING), v) for k, v in self.expected.items())
        ):
            return self.original.render(context, request)
        context = make_context(context, None, autoescape=self.backend.engine.autoescape)
        try:
            return self.shadow.render(context)
        except TemplateDoesNotExist as exc:
            reraise(exc, self.backend)


class _Planner:
    """Plans one template set for one group of messages (see the module docstring)."""

    def __init__(self, messages: list[Any], channel: Any) -> None:
        self.messages, self.channel, self.engine = messages, channel, None
        self.assigned: set[str] = set()  # set by some tag: never stable
        self.exposed: set[str] = set()  # handed to custom code: never stable
        self.used: set[str] = set()  # the stable names a template's cached runs read
        self.includes: dict[int, Template] = {}  # id(IncludeNode) -> its template
        self.stable: dict[str, bool] = {}
        self.expected: dict[str, Any] = {}  # name -> snapshot (or _MISSING)
        self.language, self.timezone = translation.get_language(), timezone.get_current_timezone()

    def _include(self, node: Node) -> Template:
        """The template of an ``{% include %}`` of a literal name, as IncludeNode finds it."""
        if id(node) not in self.includes:
            expr = node.template
            if type(expr) is not FilterExpression or not isinstance(expr.var, str) or expr.filters:
                raise _Opaque(node)
            names = (ltags.construct_relative_path(node.origin.template_name, expr.var),)
            self.includes[id(node)] = self.engine.select_template(names)
        return _plain(self.includes[id(node)], self.engine)

    def collect(self, nodelist: NodeList, bound: frozenset, including: tuple = ()) -> None:
        """Pass 1: what any node of the set sets or hands to custom code; unknown nodes."""
        for node in nodelist:
            if type(node) is ltags.IncludeNode:
                template = self._include(node)
                if template in including or len(including) > 10:
                    raise _Opaque(node)  # a recursive include
                for expr in node.extra_context.values():
                    self._check(expr, bound, exposed=False)
                inner = bound | set(node.extra_context)
                self.collect(template.nodelist, inner, (*including, template))
                continue
            spec = _spec(node)
            for expr in spec.exprs:
                self._check(expr, bound, exposed=False)
            for expr in spec.exposes:
                self._check(expr, bound, exposed=True)
            for expr in spec.inner[1]:
                self._check(expr, bound | set(spec.inner[0]), exposed=False)
            self.assigned.update(spec.assigns)
            for _key, child, binds in spec.children:
                self.collect(child, bound | set(binds), including)

    def _check(self, expr: Any, bound: frozenset, *, exposed: bool) -> None:
        variables, filters = _parts(expr)
        if any(_MUTATORS.intersection(v.lookups or ()) for v in variables):
            raise _Opaque(expr)
        roots = [v.lookups[0] for v in variables if v.lookups]
        exposed = exposed or any(func not in _KNOWN_FILTERS for func, _args in filters)
        if exposed and bound.intersection(roots):
            raise _Opaque(expr)  # custom code would get a loop or {% with %} variable
        if exposed:
            self.exposed.update(roots)

    def check_exposed(self) -> None:
        """What custom code gets must be immutable (or the renderer's channel)."""
        for name, message in ((n, m) for n in self.exposed for m in self.messages):
            value = self._value(message, name)
            if type(value) not in _ATOMS and value is not _MISSING and value is not self.channel:
                raise _Opaque(name)

    def _value(self, message: Any, name: str) -> Any:
        """The value of ``name`` in the renderer's context for ``message``."""
        if name in message.context:
            return message.context[name]
        return {"message": message, "channel": self.channel}.get(name, _MISSING)

    def _top(self, name: str) -> bool:
        if name not in self.stable:
            first = self._value(self.messages[0], name)
            snapshot = _snapshot(first, [_MAX_ITEMS]) if first is not _MISSING else first
            self.stable[name] = (
                name not in self.exposed
                and (snapshot is not _MISSING or first is _MISSING)
                and all(
                    (value := self._value(m, name)) is first or _same(value, first)
                    for m in self.messages[1:]
                )
            )
            self.expected[name] = snapshot
        return self.stable[name]

    def _name(self, name: str, scope: dict) -> bool:
        if name in self.assigned:
            return False
        if name in scope:
            return scope[name]
        if not self._top(name):
            return False
        self.used.add(name)
        return True

    def _stable(self, expr: Any, scope: dict) -> bool:
        variables, filters = _parts(expr)
        return (
            all(func in _PURE_FILTERS for func, _args in filters)
            and not any(_CLOCK.intersection(v.lookups or ()) for v in variables)
            and all(self._name(v.lookups[0], scope) for v in variables if v.lookups)
        )

    def _scope(self, scope: dict, binds: dict, whole=True) -> dict:
        """Inside a node binding ``binds``; ``whole``: in a unit holding all of it (loops too)."""
        inner = dict(scope)
        for name, value in binds.items():
            if type(value) is list:  # stable for a unit holding the whole loop
                inner[name] = whole and self._stable(value[0], scope)
            else:
                inner[name] = value is not None and self._stable(value, scope)
        return inner

    def _cacheable(self, node: Node, scope: dict) -> bool:
        """Pass 2: whether ``node`` renders the same in every message at this place."""
        if type(node) is ltags.IncludeNode:  # (with "only", unbound names are just missing)
            inner = self._scope(scope, node.extra_context)
            return all(self._cacheable(n, inner) for n in self._include(node).nodelist)
        spec = _spec(node)
        inner = self._scope(scope, spec.inner[0])
        return (
            spec.kind == PURE
            and all(self._stable(expr, scope) for expr in spec.exprs)
            and all(self._stable(expr, inner) for expr in spec.inner[1])
            and all(self._name(name, scope) for name in spec.names)
            and all(
                self._cacheable(child, self._scope(scope, binds))
                for _key, nodelist, binds in spec.children
                for child in nodelist
            )
        )

    def shadow(self, nodelist: NodeList, scope: dict) -> NodeList:
        """``nodelist`` with its cacheable runs cached (itself if there are none)."""
        out, run = NodeList(), []
        for node in [*nodelist, None]:
            if node is not None and self._cacheable(node, scope):
                run.append(node)
                continue
            worth = any(not isinstance(n, (TextNode, dtags.LoadNode)) for n in run)
            out.extend([_Cached(run)] if worth else run)
            run = []
            if node is not None:
                out.append(self._rebuild(node, scope))
        out.contains_nontext = nodelist.contains_nontext
        same = len(out) == len(nodelist) and all(map(operator.is_, out, nodelist))
        return nodelist if same else out

    def _rebuild(self, node: Node, scope: dict) -> Node:
        """``node`` with cached runs inside its children, where they may be."""
        if type(node) is ltags.IncludeNode or _spec(node).kind == DYNAMIC:
            return node
        lists = {}
        for key, nodelist, binds in _spec(node).children:
            new = self.shadow(nodelist, self._scope(scope, binds, whole=False))
            if new is not nodelist:
                lists[key] = new
        if not lists:
            return node
        clone = copy.copy(node)
        if type(node) is dtags.IfNode:
            pairs = enumerate(node.conditions_nodelists)
            clone.conditions_nodelists = [(c, lists.get(i, nl)) for i, (c, nl) in pairs]
        for key, nodelist in lists.items():
            if isinstance(key, str):
                setattr(clone, key, nodelist)
        return clone

    def plan(self, templates: dict[str, Any]) -> dict[str, Any]:
        """Batch templates for the fields that have something to share."""
        if any(type(t) is not BackendTemplate for t in templates.values()):
            raise _Opaque(templates)
        self.engine = next(iter(templates.values())).template.engine
        for template in templates.values():
            self.collect(_plain(template.template, self.engine).nodelist, frozenset())
        self.check_exposed()
        planned = {}
        for field, template in templates.items():
            self.used = set()
            nodelist = self.shadow(template.template.nodelist, {})
            same = nodelist is template.template.nodelist
            planned[field] = template if same else _BatchTemplate(template, nodelist, self)
        return planned


def _plain(template: Any, engine: Any) -> Template:
    if type(template) is not Template or template.engine is not engine:
        raise _Opaque(template)
    return template


class RenderBatch:
    """The messages of one language group of :meth:`ace.batch.BatchSender.prepare`; their
    templates render the shared parts once (``ACE_BATCH_RENDER = False`` turns this off)."""

    def __init__(self, messages: list[Any]) -> None:
        self.messages = list(messages)
        self.enabled = getattr(settings, "ACE_BATCH_RENDER", True)
        self._plans: dict[tuple[int, int], tuple[Any, Any, dict[str, Any]]] = {}

    def templates(self, templates: dict[str, Any], channel: Any, message: Any) -> dict[str, Any]:
        """The templates for ``message`` on ``channel`` (``templates`` if nothing is shared)."""
        if not self.enabled:
            return templates
        key = (id(templates), id(channel))
        if key not in self._plans:
            same = (message.app_label, message.name)
            peers = [m for m in self.messages if (m.app_label, m.name) == same] or [message]
            try:
                planned = _Planner(peers, channel).plan(templates)
            except (_Opaque, TemplateDoesNotExist, TemplateSyntaxError) as why:
                log.debug("%s renders in full: %r", message.unique_name, why)
                planned = templates
            except Exception:  # the optimisation never fails a send
                log.exception("%s renders in full", message.unique_name)
                planned = templates
            self._plans[key] = (templates, channel, planned)  # keeps the ids valid
        return self._plans[key][2]
