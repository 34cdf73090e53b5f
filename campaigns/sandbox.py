"""What a render of an operator template may call and cost (used by campaigns.templating).

* :class:`SandboxedVariable` resolves like Django's ``Variable`` but calls only what
  :func:`safe_to_call` allows (C methods of immutable values, ``dict.items/keys/values``, methods
  a class lists in ``template_safe_methods``); any other callable -- ``dict.popitem``,
  ``list.pop``, ``Model.save``, a function, a class -- becomes ``string_if_invalid`` uncalled.
* :class:`CopyOnRead` gives each render its own copy (:func:`plain_copy`) of what it reads.
* :func:`render_limited` runs a top-level render (one part) under a budget shared with the
  templates it includes: :class:`BudgetNodeList` (every nodelist of an operator template) and
  :class:`LoopBody` (every loop body) count the output as it is produced and look at the clock
  every few nodes (a deadline, so no thread or signal that would upset a Celery prefork worker);
  :func:`render_nested` bounds include/extends nesting; filters wrapped by :func:`guard` refuse
  width/count arguments that would multiply their input, and results over the output limit.
  Hitting a limit raises :class:`TemplateLimitError`, a fatal channel error, so the one message
  fails with the reason (``ace.send`` and the batch path both report it).
"""

from __future__ import annotations

import contextvars
import copy
import datetime as dt
import functools
import re
import time
from collections.abc import Callable
from decimal import Decimal
from inspect import signature
from types import BuiltinMethodType
from typing import Any

from django.core.signals import setting_changed
from django.template import Context, Node, NodeList
from django.template import defaultfilters as f
from django.template.base import Variable, VariableDoesNotExist
from django.template.context import BaseContext
from django.utils.safestring import SafeString

from ace.errors import FatalChannelDeliveryError
from ace.message import Message
from campaigns import conf

#: Values whose (C-implemented) methods templates may call: immutable, so no side effects.
SAFE_METHOD_TYPES = (str, int, float, complex, Decimal, dt.date, dt.time, dt.timedelta)
#: Read-only dict methods templates may call (``{% for k, v in d.items %}``).
SAFE_DICT_METHODS = frozenset({"items", "keys", "values"})
#: A template that hit the time limit is refused at once for this long (seconds), so a batch
#: fails its remaining messages quickly instead of spending the limit on each of them.
SLOW_TEMPLATE_SECONDS = 60.0
_CLOCK_EVERY = 32  # node renders between two looks at the clock
_BIG = 4096  # a filter result this long is followed by a look at the clock

ERROR_TOO_LARGE = (
    "Template output is over the limit of %(limit)s bytes (CAMPAIGNS_TEMPLATE_MAX_OUTPUT_BYTES)."
)
ERROR_TOO_SLOW = (
    "Template rendering took longer than the limit of %(limit)s s"
    " (CAMPAIGNS_TEMPLATE_MAX_RENDER_SECONDS)."
)
ERROR_STILL_SLOW = " It did so less than %(seconds)d s ago, so it is not rendered again yet."
ERROR_TOO_DEEP = (
    "Template includes/extends nest more than %(limit)s deep"
    " (CAMPAIGNS_TEMPLATE_MAX_INCLUDE_DEPTH); does a template include itself?"
)
ERROR_RECURSION = "Template rendering recursed too deeply."
ERROR_FILTER_ARGUMENT = (
    "|%(filter)s:%(value)s is over the limit of %(limit)s (CAMPAIGNS_TEMPLATE_MAX_FILTER_WIDTH)."
)


class TemplateLimitError(FatalChannelDeliveryError):
    """A template edited here hit a sandbox limit while rendering; the message fails with it."""

    def __init__(self, message: str, *, slow: bool = False):
        super().__init__(message)
        self.slow = slow


_CONTAINERS = (dict, list, tuple, set, frozenset)


_COPIED = frozenset({*_CONTAINERS, Message})


def plain_copy(value: Any, memo: dict | None = None, depth: int = 0) -> Any:
    """A copy of ``value`` for one render: dicts, lists, tuples and sets all the way down and an
    ACE ``Message`` with copied context and options; anything else is the object itself (its
    methods are not called anyway). Objects shared in ``value`` stay shared in the copy, and a
    ``memo`` shared by several calls (``copy.deepcopy``'s convention: ``memo[id(memo)]`` keeps
    the originals alive) copies each object once and gives its copy back as is."""
    kind = type(value)
    if kind not in _COPIED:
        return value
    memo = {} if memo is None else memo
    found = memo.get(id(value))
    if found is not None or depth > 50:
        return value if found is None else found
    result: Any
    deeper = depth + 1
    if kind is dict:
        result = memo[id(value)] = {}
        for key, item in value.items():
            result[key] = plain_copy(item, memo, deeper) if type(item) in _COPIED else item
    elif kind is list:
        result = memo[id(value)] = [
            plain_copy(item, memo, deeper) if type(item) in _COPIED else item for item in value
        ]
    elif kind is Message:
        result = memo[id(value)] = copy.copy(value)
        result.context = plain_copy(value.context, memo, deeper)
        result.options = plain_copy(value.options, memo, deeper)
    else:  # tuples and sets: their items can't contain them
        result = memo[id(value)] = kind(plain_copy(item, memo, deeper) for item in value)
    memo[id(result)] = result
    memo.setdefault(id(memo), []).append(value)
    return result


class CopyOnRead(dict):
    """The values of one render: each is copied (:func:`plain_copy`) when it is first read, so
    only what a template uses costs a copy. Tags' own values (``forloop``...) live in the
    dicts pushed above this one and are not copied."""

    __slots__ = ("_memo",)

    def __init__(self, values: dict[str, Any]):
        super().__init__(values)
        self._memo: dict = {}

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if type(value) in _COPIED and id(value) not in self._memo:
            value = plain_copy(value, self._memo)
            dict.__setitem__(self, key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401 (self.get is this)


# ----------------------------------------------------------------------------------------------
# Limits of one render
# ----------------------------------------------------------------------------------------------


_limits: tuple[float, int, int, int] | None = None


def limits() -> tuple[float, int, int, int]:
    """(seconds, output bytes, filter width, include depth), read once from the settings."""
    global _limits
    if _limits is None:
        _limits = (
            conf.template_max_render_seconds(),
            conf.template_max_output_bytes(),
            conf.template_max_filter_width(),
            conf.template_max_include_depth(),
        )
    return _limits


def _forget_limits(*, setting: str, **_kwargs: Any) -> None:
    global _limits
    if setting.startswith("CAMPAIGNS_TEMPLATE_"):
        _limits = None


setting_changed.connect(_forget_limits, dispatch_uid="campaigns.sandbox.limits")


class _RenderState:
    """The budget of one top-level render (a part), shared by the templates it includes."""

    __slots__ = ("deadline", "depth", "max_bytes", "max_depth", "max_width", "produced")
    __slots__ += ("seconds", "ticks")

    def __init__(self) -> None:
        self.seconds, self.max_bytes, self.max_width, self.max_depth = limits()
        self.deadline = time.monotonic() + self.seconds
        self.produced = self.ticks = self.depth = 0

    def check_clock(self) -> None:
        self.ticks = 0
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(ERROR_TOO_SLOW % {"limit": f"{self.seconds:g}"}, slow=True)

    def too_large(self) -> TemplateLimitError:
        return TemplateLimitError(ERROR_TOO_LARGE % {"limit": self.max_bytes})


_state: contextvars.ContextVar[_RenderState | None] = contextvars.ContextVar(
    "campaigns_template_render", default=None
)


def active() -> bool:
    """Whether a sandboxed render is going on (in this thread or task)."""
    return _state.get() is not None


def render_limited(owner: Any, render: Callable[[Context], str], context: Context) -> str:
    """``render(context)`` as a top-level render under fresh limits (``owner``: the template,
    whose ``slow_since`` remembers a time limit it hit, so it fails at once for a while)."""
    slow = getattr(owner, "slow_since", None)
    if slow is not None and time.monotonic() - slow[0] < SLOW_TEMPLATE_SECONDS:
        raise TemplateLimitError(slow[1] + ERROR_STILL_SLOW % {"seconds": SLOW_TEMPLATE_SECONDS})
    state = _RenderState()
    token = _state.set(state)
    try:
        output = render(context)
    except TemplateLimitError as exc:
        if exc.slow:
            owner.slow_since = (time.monotonic(), str(exc))
        raise
    except RecursionError:
        raise TemplateLimitError(ERROR_RECURSION) from None
    finally:
        _state.reset(token)
    limit = state.max_bytes
    if len(output) * 4 > limit and len(output.encode(errors="replace")) > limit:
        raise state.too_large()
    return output


def render_nested(render: Callable[[Context], str], context: Context) -> str:
    """``render(context)`` one include/extends level deeper in the current render."""
    state = _state.get()
    if state is None:
        raise RuntimeError("render_nested() outside render_limited()")
    state.depth += 1
    try:
        if state.depth > state.max_depth + 1:
            raise TemplateLimitError(ERROR_TOO_DEEP % {"limit": state.max_depth})
        return render(context)
    finally:
        state.depth -= 1


class BudgetNodeList(NodeList):
    """A NodeList that, in a sandboxed render, counts what its nodes output as they do (a node's
    output replaces what its children counted, so the count is what exists so far) and counts
    itself towards the next look at the clock. Loops count each pass (:class:`LoopBody`), so
    the clock is looked at however the work repeats; nodes in a row are as many as the source
    has."""

    def render(self, context: Context) -> SafeString:
        state = _state.get()
        if state is None:
            return super().render(context)
        state.ticks += 1
        if state.ticks >= _CLOCK_EVERY:
            state.check_clock()
        parts = []
        produced = state.produced
        limit = state.max_bytes
        for node in self:
            output = node.render_annotated(context)
            produced += len(output)
            if produced > limit:  # characters: never more than bytes
                raise state.too_large()
            state.produced = produced
            parts.append(output)
        return SafeString("".join(parts))


class LoopBody(Node):
    """A ``{% for %}`` body as one node (the loop renders its nodes one by one itself): each
    pass is counted like a node, and the body's nodes like those of any BudgetNodeList."""

    child_nodelists = ("nodelist",)

    def __init__(self, nodelist: NodeList, loop: Node):
        self.nodelist = nodelist
        self.token = getattr(loop, "token", None)  # errors point at the {% for %}
        self.origin = getattr(loop, "origin", None)

    def render(self, context: Context) -> str:
        state = _state.get()
        if state is not None:
            state.ticks += 1
            if state.ticks >= _CLOCK_EVERY:
                state.check_clock()
        return self.nodelist.render(context)


# ----------------------------------------------------------------------------------------------
# Variables: no calls with side effects
# ----------------------------------------------------------------------------------------------


def safe_to_call(func: Any) -> bool:
    """Whether a template may call ``func`` (a value a variable resolved to): a C method of an
    immutable value, ``dict.items/keys/values``, or a method its class lists in
    ``template_safe_methods``. Not functions, classes, or methods of models, lists, sets..."""
    owner = getattr(func, "__self__", None)
    if owner is None or isinstance(owner, type):
        return False
    name = getattr(func, "__name__", "")
    if name in getattr(type(owner), "template_safe_methods", ()):
        return True
    if not isinstance(func, BuiltinMethodType):
        return False
    return isinstance(owner, SAFE_METHOD_TYPES) or (
        isinstance(owner, dict) and name in SAFE_DICT_METHODS
    )


class SandboxedVariable(Variable):
    """A Variable that resolves like Django's (key, attribute, then index lookups, the same
    code) but calls only what :func:`safe_to_call` allows; anything else callable becomes
    ``string_if_invalid`` uncalled (as Django does for ``alters_data``)."""

    __slots__ = ()

    def _resolve_lookup(self, context: Any) -> Any:
        current = context
        try:
            for bit in self.lookups:
                try:  # dictionary lookup
                    if not hasattr(type(current), "__getitem__"):
                        raise TypeError
                    current = current[bit]
                except (TypeError, AttributeError, KeyError, ValueError, IndexError):
                    try:  # attribute lookup (never of the context object itself)
                        if isinstance(current, BaseContext) and getattr(type(current), bit):
                            raise AttributeError
                        current = getattr(current, bit)
                    except (TypeError, AttributeError):
                        if not isinstance(current, BaseContext) and bit in dir(current):
                            raise  # raised by a @property
                        try:  # list-index lookup
                            current = current[int(bit)]
                        except (IndexError, ValueError, KeyError, TypeError):
                            raise VariableDoesNotExist(
                                "Failed lookup for key [%s] in %r", (bit, current)
                            ) from None
                if callable(current) and not getattr(current, "do_not_call_in_templates", False):
                    if not safe_to_call(current):
                        current = context.template.engine.string_if_invalid
                        continue
                    try:
                        current = current()
                    except TypeError:
                        try:
                            signature(current).bind()
                        except (TypeError, ValueError):  # arguments were required
                            current = context.template.engine.string_if_invalid
                        else:
                            raise
        except Exception as exc:
            if getattr(exc, "silent_variable_failure", False):
                return context.template.engine.string_if_invalid
            raise
        return current


# ----------------------------------------------------------------------------------------------
# Filters: bounded arguments and results
# ----------------------------------------------------------------------------------------------

FILTER_ARGUMENTS = {
    f.ljust: "width",
    f.rjust: "width",
    f.center: "width",
    f.wordwrap: "width",
    f.floatformat: "digits",
    f.stringformat: "format",
    f.join: "join",
}
_GUARDS: dict[Any, Any] = {}


def check_filter_argument(func: Any, value: Any, arg: Any, *, width: int, size: int) -> None:
    """Refuse a width/count argument over ``width`` (``value`` None: at compile time) or a join
    whose separators alone would be over ``size``."""
    kind = FILTER_ARGUMENTS.get(func)
    if kind == "join":
        count = len(value) if value is not None and hasattr(value, "__len__") else 0
        if count > 1 and (count - 1) * len(str(arg)) > size:
            raise TemplateLimitError(ERROR_TOO_LARGE % {"limit": size})
        return
    text = str(arg)
    if kind == "format":  # every width and precision of a %-format
        numbers = [int(d) if len(d) < 10 else width + 1 for d in re.findall(r"[0-9]+", text)]
    else:  # what the filter's own int() makes of it (floatformat: without its g/u suffix)
        try:
            numbers = [abs(int(text.rstrip("gu") if kind == "digits" else text))]
        except (TypeError, ValueError):
            numbers = []  # the filter refuses it itself
    if any(number > width for number in numbers):
        name = getattr(func, "_filter_name", getattr(func, "__name__", "filter"))
        shown = text if len(text) <= 20 else f"{text[:20]}..."
        raise TemplateLimitError(
            ERROR_FILTER_ARGUMENT % {"filter": name, "value": shown, "limit": width}
        )


def guard(func: Any) -> Any:
    """``func`` checking its argument (:data:`FILTER_ARGUMENTS`) and the size of its result."""
    if getattr(func, "sandbox_guard", False):
        return func
    guarded = _GUARDS.get(func)
    if guarded is not None:
        return guarded
    checked = func in FILTER_ARGUMENTS

    @functools.wraps(func)
    def guarded(value: Any, *args: Any, **kwargs: Any) -> Any:
        state = _state.get()
        if state is None:
            return func(value, *args, **kwargs)
        if checked and args:
            check_filter_argument(func, value, args[0], width=state.max_width, size=state.max_bytes)
        result = func(value, *args, **kwargs)
        if isinstance(result, (str, list, tuple)):
            if len(result) > state.max_bytes:
                raise state.too_large()
            if len(result) > _BIG:
                state.check_clock()
        return result

    guarded.sandbox_guard = True  # type: ignore[attr-defined]
    _GUARDS[func] = guarded
    return guarded
