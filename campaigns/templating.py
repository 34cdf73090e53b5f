"""The sandbox for operator-edited templates: what they may load, include and see, and analysis.

Templates stored in the database are written by operators, not developers, so they are compiled
by :class:`SandboxedTemplate`, which:

* keeps only the tag libraries in :data:`ALLOWED_LIBRARIES` loadable (``{% load admin_urls %}``
  is a syntax error) and drops the ``{% debug %}`` tag (it prints the whole context and the
  loaded Python modules);
* allows ``{% include %}`` / ``{% extends %}`` only of literal ACE template paths
  (``<app_label>/edx_ace/...``), never of a variable or of another site template;
* refuses variables named like request/settings context (:data:`FORBIDDEN_NAMES`) at compile time
  and strips them from the context at render time, and shows the ACE channel object only through
  a small allow-listed view (a channel can hold API credentials, e.g. a Sailthru client).

The same rules run when an operator saves a template (so the error is shown on the field) and when
the database loader compiles it for sending.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from django.template import Context, Library, Node, RequestContext, Template, TemplateSyntaxError
from django.template.base import DebugLexer, FilterExpression, Parser, TokenType, Variable
from django.template.engine import Engine
from django.template.loader_tags import ExtendsNode, IncludeNode

#: Tag libraries an operator template may ``{% load %}``.
ALLOWED_LIBRARIES = ("i18n", "l10n", "tz", "acetags", "static")
#: Built-in tags removed from operator templates.
FORBIDDEN_TAGS = frozenset({"debug"})
#: Context names an operator template may not use (they come from request context processors).
FORBIDDEN_NAMES = frozenset({"settings", "request", "perms", "csrf_token"})
#: Names a RequestContext adds through the default context processors.
_PROCESSOR_NAMES = frozenset({"user", "messages", "DEFAULT_MESSAGE_LEVELS"})
#: Channel attributes templates may read (upstream templates use the Sailthru ones).
CHANNEL_ATTRIBUTES = ("channel_type", "action_links", "tracker_image_sources")

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


class ChannelView:
    """What an operator template sees of the ACE channel: a few harmless attributes."""

    def __init__(self, channel: Any):
        for name in CHANNEL_ATTRIBUTES:
            value = getattr(channel, name, None)
            if name == "channel_type" and value is not None:
                value = getattr(value, "value", value)
            setattr(self, name, value)

    def __str__(self) -> str:
        return str(self.channel_type or "")


def sanitize_values(values: dict[str, Any], *, from_request: bool = False) -> dict[str, Any]:
    """Drop names templates may not see and wrap the channel; returns a new dict."""
    dropped = FORBIDDEN_NAMES | (_PROCESSOR_NAMES if from_request else frozenset())
    clean = {key: value for key, value in values.items() if key not in dropped}
    channel = clean.get("channel")
    if channel is not None and not isinstance(channel, (str, ChannelView)):
        clean["channel"] = ChannelView(channel)
    return clean


class SandboxedTemplate(Template):
    """A Django template compiled and rendered under the operator-template rules above."""

    def compile_nodelist(self):
        # Always the debug lexer: tokens keep their line numbers for error messages.
        tokens = DebugLexer(self.source).tokenize()
        libraries, builtins = _sandbox_libraries(self.engine)
        parser = Parser(tokens, libraries, builtins, self.origin)
        try:
            nodelist = parser.parse()
        except TemplateSyntaxError as exc:
            raise _with_line(exc) from None
        self.extra_data = parser.extra_data
        check_nodelist(nodelist)
        return nodelist

    def render(self, context: Context):
        values = context.flatten()
        if isinstance(context, RequestContext):
            sandboxed = Context(
                sanitize_values(values, from_request=True),
                autoescape=context.autoescape,
                use_l10n=context.use_l10n,
                use_tz=context.use_tz,
            )
        else:
            # new() keeps the context's class and flags (a preview's tracking context too).
            sandboxed = context.new(sanitize_values(values))
        return super().render(sandboxed)


def _with_line(exc: TemplateSyntaxError) -> TemplateSyntaxError:
    """Prefix the line number when the message doesn't already say it."""
    token = getattr(exc, "token", None)
    lineno = getattr(token, "lineno", None)
    message = str(exc)
    if token is not None and getattr(token, "token_type", None) == TokenType.BLOCK:
        name = token.contents.split()[0] if token.contents.split() else ""
        if name in FORBIDDEN_TAGS:
            message = ERROR_FORBIDDEN_TAG % name
    if lineno and "line" not in message:
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
                raise _node_error(node, ERROR_INCLUDE_VARIABLE % tag)
            if not is_ace_template_path(str(expr.var)):
                raise _node_error(node, ERROR_INCLUDE_PATH % (tag, str(expr.var)))
        used, _bound = node_variables(node)
        for name in used:
            root = name.split(".", 1)[0]
            if root in FORBIDDEN_NAMES:
                raise _node_error(node, ERROR_FORBIDDEN_NAME % root)


def _node_error(node: Node, message: str) -> TemplateSyntaxError:
    lineno = getattr(getattr(node, "token", None), "lineno", None)
    exc = TemplateSyntaxError(f"Line {lineno}: {message}" if lineno else message)
    exc.token = getattr(node, "token", None)
    return exc
