"""The sandbox for operator-edited templates: what they may load, include, see, call and cost.

Templates stored in the database are written by operators, not developers, so they are compiled
by :class:`SandboxedTemplate`, which:

* keeps only the tag libraries in :data:`ALLOWED_LIBRARIES` loadable (``{% load admin_urls %}``
  is a syntax error) and drops :data:`FORBIDDEN_TAGS` (``{% debug %}`` prints the context and
  the loaded modules; ``{% lorem 100000000 %}`` is one tag's way to a huge output);
* allows ``{% include %}`` / ``{% extends %}`` only of literal ACE template paths
  (``<app_label>/edx_ace/...``), never of a variable or of another site template;
* refuses variables named like request/settings context (:data:`FORBIDDEN_NAMES`) at compile time
  and strips them from the context at render time, and shows the ACE channel object only through
  a small allow-listed view (a channel can hold API credentials, e.g. a Sailthru client);
* calls nothing a variable resolves to unless it is known to be free of side effects
  (:func:`campaigns.sandbox.safe_to_call`): ``{{ message.options.popitem }}``, ``{{ items.pop }}``,
  ``{{ user.save }}`` render as ``string_if_invalid`` (empty) without being called; data,
  attributes, keys and indexes work as in Django, and so do ``dict.items/keys/values`` and the
  methods of immutable values (``{{ name.upper }}``);
* gives each render its own copy of the context's containers (``sandbox.plain_copy``), so nothing a
  render does reaches the shared campaign context or the message being sent;
* bounds each render of a part (:class:`~campaigns.sandbox.TemplateLimitError`): output
  (``CAMPAIGNS_TEMPLATE_MAX_OUTPUT_BYTES``, counted as it is produced, so a loop stops at the
  limit), time (``CAMPAIGNS_TEMPLATE_MAX_RENDER_SECONDS``: a deadline checked while nodes render,
  no thread or signal), include/extends nesting (``CAMPAIGNS_TEMPLATE_MAX_INCLUDE_DEPTH``) and
  the width/count arguments of the filters that would multiply their input
  (``CAMPAIGNS_TEMPLATE_MAX_FILTER_WIDTH``; a literal one is refused when the template is saved).

The same rules run when an operator saves a template (so the error is shown on the field) and when
the database loader compiles it for sending. File templates (shipped in code) are plain Django.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from django.template import Context, Library, Node, RequestContext, Template, TemplateSyntaxError
from django.template.base import (
    DebugLexer,
    FilterExpression,
    NodeList,
    Origin,
    Parser,
    Token,
    TokenType,
    Variable,
)
from django.template.defaulttags import ForNode
from django.template.engine import Engine
from django.template.loader_tags import ExtendsNode, IncludeNode

from campaigns import conf, sandbox
from campaigns.sandbox import (
    FILTER_ARGUMENTS,
    CopyOnRead,
    SandboxedVariable,
    TemplateLimitError,
    check_filter_argument,
    plain_copy,
)

#: Tag libraries an operator template may ``{% load %}``.
ALLOWED_LIBRARIES = ("i18n", "l10n", "tz", "acetags", "static")
#: Built-in tags removed from operator templates.
FORBIDDEN_TAGS = frozenset({"debug", "lorem"})
#: Context names an operator template may not use (they come from request context processors).
FORBIDDEN_NAMES = frozenset({"settings", "request", "perms", "csrf_token"})
#: Names a RequestContext adds through the default context processors.
_PROCESSOR_NAMES = frozenset({"user", "messages", "DEFAULT_MESSAGE_LEVELS"})
#: Channel attributes templates may read (upstream templates use the Sailthru ones).
CHANNEL_ATTRIBUTES = ("channel_type", "action_links", "tracker_image_sources")
#: Most nested tags (deeper nesting would exhaust the stack while rendering).
MAX_NESTING = 50

#: An ACE template path: ``<app_label>/edx_ace/<anything without "..">``.
ACE_TEMPLATE_PATH_RE = re.compile(r"^[\w-]+/edx_ace/(?:[\w.-]+/)*[\w.-]+$")

ERROR_INCLUDE_VARIABLE = (
    '{%% %s %%} needs a quoted ACE template path (e.g. "campaigns/edx_ace/common/footer.html"),'
    " not a variable."
)
ERROR_INCLUDE_PATH = "{%% %s %%} may only use ACE template paths (<app_label>/edx_ace/...), not %r."
ERROR_FORBIDDEN_NAME = (
    "Templates only see the message context; %r is not available to templates edited here."
)
ERROR_FORBIDDEN_TAG = "The {%% %s %%} tag is not allowed in templates edited here."
ERROR_NESTING = "Tags are nested more than %(limit)s deep."


def is_ace_template_path(path: str) -> bool:
    """True for ``<app_label>/edx_ace/...`` paths without ``..`` segments."""
    return bool(ACE_TEMPLATE_PATH_RE.match(path)) and ".." not in path.split("/")


@lru_cache(maxsize=8)
def _sandbox_libraries(engine: Engine) -> tuple[dict[str, Library], list[Library]]:
    """The engine's loadable libraries and builtins, restricted for operator templates."""
    libraries = {
        name: lib for name, lib in engine.template_libraries.items() if name in ALLOWED_LIBRARIES
    }
    builtins = []
    for lib in engine.template_builtins:
        restricted = Library()
        restricted.filters = dict(lib.filters)
        restricted.tags = {
            name: func for name, func in lib.tags.items() if name not in FORBIDDEN_TAGS
        }
        builtins.append(restricted)
    return libraries, builtins


# ----------------------------------------------------------------------------------------------
# What a render sees: sanitized names, a channel view, copies of the shared data
# ----------------------------------------------------------------------------------------------


class ChannelView:
    """What an operator template sees of the ACE channel: copies of a few harmless attributes."""

    def __init__(self, channel: Any):
        for name in CHANNEL_ATTRIBUTES:
            value = getattr(channel, name, None)
            if name == "channel_type" and value is not None:
                value = getattr(value, "value", value)
            setattr(self, name, plain_copy(value))

    def __str__(self) -> str:
        return str(self.channel_type or "")


def sanitize_values(values: dict[str, Any], *, from_request: bool = False) -> dict[str, Any]:
    """Drop names templates may not see and wrap the channel; a new dict whose values are
    copied when first read (``sandbox.CopyOnRead``)."""
    dropped = FORBIDDEN_NAMES | (_PROCESSOR_NAMES if from_request else frozenset())
    clean = {key: value for key, value in values.items() if key not in dropped}
    channel = clean.get("channel")
    if channel is not None and not isinstance(channel, (str, ChannelView)):
        clean["channel"] = ChannelView(channel)
    return CopyOnRead(clean)


def _sandbox_variable(var: Any) -> None:
    if type(var) is Variable:
        var.__class__ = SandboxedVariable


def _sandbox_expression(expr: FilterExpression) -> None:
    """Sandbox the variables of ``expr``, guard its filters, check literal filter arguments."""
    if type(expr) is FilterExpression:
        expr.__class__ = SandboxedFilterExpression
    _sandbox_variable(expr.var)
    filters = []
    for func, args in expr.filters:
        for is_lookup, arg in args:
            if is_lookup:
                _sandbox_variable(arg)
        if func in FILTER_ARGUMENTS and args and not args[0][0]:
            try:
                check_filter_argument(
                    func,
                    None,
                    args[0][1],
                    width=conf.template_max_filter_width(),
                    size=conf.template_max_output_bytes(),
                )
            except TemplateLimitError as exc:
                raise TemplateSyntaxError(str(exc)) from None
        filters.append((sandbox.guard(func), args))
    expr.filters = filters


class SandboxedFilterExpression(FilterExpression):
    """A FilterExpression with sandboxed variables and guarded filters."""

    __slots__ = ()

    def __init__(self, token: str, parser: Parser):
        super().__init__(token, parser)
        _sandbox_expression(self)


class _SandboxParser(Parser):
    """Every expression a tag compiles is sandboxed."""

    def compile_filter(self, token: str) -> FilterExpression:
        return SandboxedFilterExpression(token, self)


_OPAQUE = (str, bytes, int, float, Template, Engine, Origin, Token, Parser)


def _sandbox_tree(nodelist: NodeList) -> None:
    """Walk everything a compiled template holds (nodes, nodelists, expressions, if-conditions):
    sandbox what the parser did not (a tag may build expressions itself), make every nodelist a
    ``BudgetNodeList`` and every loop body a ``LoopBody``; refuse too deep a nesting."""
    stack: list[tuple[Any, int]] = [(nodelist, 0)]
    seen: set[int] = set()
    while stack:
        obj, depth = stack.pop()
        if isinstance(obj, _OPAQUE) or callable(obj) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, NodeList):
            if depth >= MAX_NESTING:
                raise TemplateSyntaxError(ERROR_NESTING % {"limit": MAX_NESTING})
            if type(obj) is NodeList:
                obj.__class__ = sandbox.BudgetNodeList
            stack.extend((node, depth + 1) for node in obj)
            continue
        if isinstance(obj, ForNode) and not any(
            isinstance(node, sandbox.LoopBody) for node in obj.nodelist_loop
        ):
            obj.nodelist_loop = NodeList([sandbox.LoopBody(obj.nodelist_loop, obj)])
        if isinstance(obj, FilterExpression):
            _sandbox_expression(obj)
        elif isinstance(obj, Variable):
            _sandbox_variable(obj)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend((item, depth) for item in obj)
        elif isinstance(obj, dict):
            stack.extend((item, depth) for item in obj.values())
        elif isinstance(obj, Node) or type(obj).__module__.startswith("django.template"):
            attrs = getattr(obj, "__dict__", {})
            stack.extend((v, depth) for k, v in attrs.items() if k not in ("token", "origin"))


# ----------------------------------------------------------------------------------------------
# The template
# ----------------------------------------------------------------------------------------------


class SandboxedTemplate(Template):
    """A Django template compiled and rendered under the operator-template rules above."""

    #: (time.monotonic(), message) of the last time this template hit the time limit.
    slow_since: tuple[float, str] | None = None

    def compile_nodelist(self):
        # Always the debug lexer: tokens keep their line numbers for error messages.
        tokens = DebugLexer(self.source).tokenize()
        libraries, builtins = _sandbox_libraries(self.engine)
        parser = _SandboxParser(tokens, libraries, builtins, self.origin)
        try:
            nodelist = parser.parse()
            _sandbox_tree(nodelist)
            check_nodelist(nodelist)
        except TemplateSyntaxError as exc:
            raise _with_line(exc) from None
        except RecursionError:
            raise TemplateSyntaxError(ERROR_NESTING % {"limit": MAX_NESTING}) from None
        self.extra_data = parser.extra_data
        return nodelist

    def render(self, context: Context):
        top = not sandbox.active()
        from_request = isinstance(context, RequestContext)
        values = sanitize_values(context.flatten(), from_request=from_request)
        if from_request:
            flags = {"use_l10n": context.use_l10n, "use_tz": context.use_tz}
            sandboxed = Context(values, autoescape=context.autoescape, **flags)
        else:
            # new() keeps the context's class and flags (a preview's tracking context too).
            sandboxed = context.new(values)
        if not top:
            return super().render(sandboxed)
        return sandbox.render_limited(self, super().render, sandboxed)

    def _render(self, context: Context):
        if not sandbox.active():  # the parent of a file template's {% extends %}
            from_request = isinstance(context, RequestContext)
            values = sanitize_values(context.flatten(), from_request=from_request)
            return sandbox.render_limited(self, self._render, context.new(values))
        return sandbox.render_nested(super()._render, context)


def _with_line(exc: TemplateSyntaxError) -> TemplateSyntaxError:
    """Prefix the line number when the message doesn't already say it."""
    token = getattr(exc, "token", None)
    lineno = getattr(token, "lineno", None)
    message = str(exc)
    if token is not None and getattr(token, "token_type", None) == TokenType.BLOCK:
        name = token.contents.split()[0] if token.contents.split() else ""
        if name in FORBIDDEN_TAGS:
            message = ERROR_FORBIDDEN_TAG % name
    if lineno and "line" not in message.lower():
        message = f"Line {lineno}: {message}"
    new = TemplateSyntaxError(message)
    new.token = token
    return new


def compile_template(source: str, *, engine: Engine | None = None, origin=None, name=None):
    """Compile ``source`` as an operator template; raises TemplateSyntaxError with a clear text."""
    engine = engine or Engine.get_default()
    return SandboxedTemplate(source, origin=origin, name=name, engine=engine)


# ----------------------------------------------------------------------------------------------
# Walking a compiled template: checks and variable analysis
# ----------------------------------------------------------------------------------------------


def iter_nodes(nodelist: Iterable[Node]) -> Iterator[Node]:
    """Every node of a compiled template, depth first (all branches of if/for/blocks)."""
    for node in nodelist:
        yield node
        for attr in node.child_nodelists:
            child = getattr(node, attr, None)
            if child:
                yield from iter_nodes(child)


def _iter_expressions(value: Any, depth: int = 0) -> Iterator[FilterExpression | Variable]:
    """FilterExpressions and Variables found in a node attribute (lists, dicts, if-conditions)."""
    if depth > 6 or value is None or isinstance(value, (str, int, Node)):
        return
    if isinstance(value, FilterExpression):
        yield value
        for _func, args in value.filters:
            for _is_lookup, arg in args:
                if isinstance(arg, Variable):
                    yield arg
        return
    if isinstance(value, Variable):
        yield value
        return
    if isinstance(value, dict):
        for item in value.values():
            yield from _iter_expressions(item, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _iter_expressions(item, depth + 1)
        return
    # smartif operators/literals of {% if %} conditions
    for attr in ("value", "first", "second"):
        if hasattr(value, attr):
            yield from _iter_expressions(getattr(value, attr), depth + 1)


def _variable_names(expr: FilterExpression | Variable) -> Iterator[str]:
    """Dotted names of the context variables an expression looks up (no literals)."""
    var = expr.var if isinstance(expr, FilterExpression) else expr
    if isinstance(var, Variable) and var.lookups:
        yield ".".join(var.lookups)
    if isinstance(expr, FilterExpression):
        for _func, args in expr.filters:
            for is_lookup, arg in args:
                if is_lookup and isinstance(arg, Variable) and arg.lookups:
                    yield ".".join(arg.lookups)


def node_variables(node: Node) -> tuple[set[str], set[str]]:
    """(names the node reads, names it binds for its children: loop variables, with-names)."""
    used: set[str] = set()
    bound: set[str] = set()
    for attr, value in vars(node).items():
        if attr in node.child_nodelists or attr in ("token", "origin"):
            continue
        for expr in _iter_expressions(value):
            used.update(_variable_names(expr))
    loopvars = getattr(node, "loopvars", None)
    if loopvars:
        bound.update(loopvars)
        bound.add("forloop")
    extra = getattr(node, "extra_context", None)
    if isinstance(extra, dict):
        bound.update(extra)
    asvar = getattr(node, "asvar", None) or getattr(node, "target_var", None)
    if isinstance(asvar, str):
        bound.add(asvar)
    if type(node).__name__ == "BlockTranslateNode":
        for token in list(node.singular or []) + list(node.plural or []):
            if token.token_type == TokenType.VAR:
                used.add(token.contents)
        if getattr(node, "countervar", None):
            bound.add(node.countervar)
    if type(node).__name__ == "BlockNode":
        bound.add("block")
    return used, bound


def included_paths(nodelist: Iterable[Node]) -> Iterator[tuple[Node, str]]:
    """(node, path) of every ``{% include %}`` / ``{% extends %}`` of a literal path."""
    for node in iter_nodes(nodelist):
        if isinstance(node, (IncludeNode, ExtendsNode)):
            expr = node.template if isinstance(node, IncludeNode) else node.parent_name
            if isinstance(expr, FilterExpression) and isinstance(expr.var, str):
                yield node, str(expr.var)


def check_nodelist(nodelist: Iterable[Node]) -> None:
    """Apply the include/extends/forbidden-name rules to a parsed template."""
    for node in iter_nodes(nodelist):
        if isinstance(node, (IncludeNode, ExtendsNode)):
            tag = "include" if isinstance(node, IncludeNode) else "extends"
            expr = node.template if isinstance(node, IncludeNode) else node.parent_name
            if (
                not isinstance(expr, FilterExpression)
                or expr.filters
                or not isinstance(expr.var, str)
            ):
                raise node_error(node, ERROR_INCLUDE_VARIABLE % tag)
            if not is_ace_template_path(str(expr.var)):
                raise node_error(node, ERROR_INCLUDE_PATH % (tag, str(expr.var)))
        used, _bound = node_variables(node)
        for name in used:
            root = name.split(".", 1)[0]
            if root in FORBIDDEN_NAMES:
                raise node_error(node, ERROR_FORBIDDEN_NAME % root)


def node_error(node: Node, message: str) -> TemplateSyntaxError:
    """A TemplateSyntaxError saying the line of ``node``."""
    lineno = getattr(getattr(node, "token", None), "lineno", None)
    exc = TemplateSyntaxError(f"Line {lineno}: {message}" if lineno else message)
    exc.token = getattr(node, "token", None)
    return exc
