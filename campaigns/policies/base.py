"""What every campaign policy is built from: results (allow, deny, defer), the toggles that switch
a policy on for a message (:class:`ToggleSnapshot`), and :class:`CampaignPolicy`."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
from django import forms
from django.core.exceptions import ValidationError

from ace.channel import ChannelType
from ace.policy import Policy, PolicyResult
from campaigns.models import MessageTypeDefinition, PolicyToggle
from campaigns.parameters import parameters_clean

if TYPE_CHECKING:
    from ace.message import Message

log = logging.getLogger(__name__)

ALL_CHANNELS: frozenset[ChannelType] = frozenset(ChannelType)

MISCONFIGURED = "policy {name} is misconfigured ({error}); denied to be safe"


def allow() -> PolicyResult:
    """A result that denies nothing."""
    return PolicyResult(deny=set())


def deny(reason: str, channels: Iterable[ChannelType] = ALL_CHANNELS) -> PolicyResult:
    """A denial of ``channels`` (default: all) with the reason recorded in the delivery log."""
    return PolicyResult(deny=set(channels), reason=reason)


def defer(
    reason: str, until: dt.datetime, channels: Iterable[ChannelType] = ALL_CHANNELS
) -> PolicyResult:
    """``channels`` (default: all) must wait until ``until`` (aware); the message is sent
    then rather than dropped."""
    return PolicyResult(deny=set(channels), reason=reason, defer_until=until)


def clean_parameters_with(
    form_class: type[forms.Form] | None, parameters: Any, *, initial_defaults: bool = True
) -> dict:
    """Validate a policy's ``parameters`` (a JSON object) with ``form_class``; return the JSON
    to store. Missing optional values take the fields' ``initial``. Errors name the parameter.
    """
    return parameters_clean(
        form_class=form_class,
        parameters=parameters,
        kind="policy",
        initial_defaults=initial_defaults,
    )


def recipient_identity(message: Message) -> tuple[int | None, str]:
    """The recipient's user id (or None) and lower-cased address (or "")."""
    recipient = message.recipient
    if recipient is None:
        return None, ""
    user_id = recipient.lms_user_id
    try:
        user_id = int(user_id) if user_id not in (None, "") else None
    except (TypeError, ValueError):
        user_id = None
    return user_id, (recipient.email_address or "").strip().lower()


# Toggles ------------------------------------------------------------------------------------


@attrs.define(frozen=True)
class EffectiveToggle:
    """Whether a policy runs for one message, and with which parameters."""

    enabled: bool
    parameters: dict = attrs.field(factory=dict)
    error: str = ""  # set when the stored parameters no longer validate


class ToggleSnapshot:
    """All ``PolicyToggle`` rows, loaded in one query (the table is small), answering
    "is policy P on for this message, with which parameters?" from memory."""

    def __init__(self, toggles: Iterable[PolicyToggle]) -> None:
        self._global: dict[str, PolicyToggle] = {}
        self._per_type: dict[tuple[str, int], PolicyToggle] = {}
        self._type_ids: dict[tuple[str, str], int | None] = {}
        self._typed_policies: set[str] = set()
        for toggle in toggles:
            if toggle.message_type_id is None:
                self._global[toggle.policy] = toggle
            else:
                self._per_type[(toggle.policy, toggle.message_type_id)] = toggle
                self._typed_policies.add(toggle.policy)
        self._cleaned: dict[int, EffectiveToggle] = {}
        #: PolicyToggleDenyPolicy.delegated() per (message type id, directly run policies):
        #: the same for every message of a type, so a batch works it out once per type.
        self.delegated_cache: dict[tuple, list] = {}

    @classmethod
    def load(cls) -> ToggleSnapshot:
        return cls(PolicyToggle.objects.all())

    def message_type_id(self, message: Message) -> int | None:
        """The ``MessageTypeDefinition`` id of a message: from its options (set by the
        dispatcher), else by ``app_label``/``name`` (one query per distinct type, cached)."""
        type_id = (message.options or {}).get("campaign_message_type_id")
        if type_id is not None:
            return int(type_id)
        key = (message.app_label, message.name)
        if key not in self._type_ids:
            self._type_ids[key] = (
                MessageTypeDefinition.objects.filter(app_label=key[0], name=key[1])
                .values_list("pk", flat=True)
                .first()
            )
        return self._type_ids[key]

    def type_key(self, message: Message) -> int | None:
        """What :meth:`effective` depends on in a message: its type id, and only when some
        toggle is per type."""
        return self.message_type_id(message) if self._typed_policies else None

    def policy_names(self) -> set[str]:
        """Every policy that has at least one toggle."""
        return set(self._global) | {name for name, _ in self._per_type}

    def effective(self, policy_cls: type, name: str, message: Message) -> EffectiveToggle:
        """The toggle for the message's type, else the global one, else the default."""
        toggle = None
        if name in self._typed_policies:  # look the type up only when it matters
            type_id = self.message_type_id(message)
            toggle = self._per_type.get((name, type_id)) if type_id is not None else None
        toggle = toggle or self._global.get(name)
        if toggle is None:
            if isinstance(policy_cls, type) and issubclass(policy_cls, CampaignPolicy):
                return policy_cls.default_toggle()
            return EffectiveToggle(enabled=False)
        if not toggle.enabled:
            return EffectiveToggle(enabled=False)
        if toggle.pk not in self._cleaned:
            self._cleaned[toggle.pk] = _clean_toggle(policy_cls, toggle)
        return self._cleaned[toggle.pk]


def _clean_toggle(policy_cls: type, toggle: PolicyToggle) -> EffectiveToggle:
    form = getattr(policy_cls, "parameters_form", None)
    try:
        return EffectiveToggle(
            enabled=True, parameters=clean_parameters_with(form, toggle.parameters)
        )
    except ValidationError as exc:
        log.error("PolicyToggle %s has invalid parameters: %s", toggle.pk, exc.messages)
        return EffectiveToggle(enabled=True, error="; ".join(exc.messages))


_batch = threading.local()


def current_toggles() -> ToggleSnapshot:
    """The batch's snapshot inside :func:`~campaigns.services.policies.policies_prefetched`,
    else a fresh one (one query)."""
    snapshot = getattr(_batch, "toggles", None)
    return snapshot if snapshot is not None else ToggleSnapshot.load()


def set_batch_toggles(snapshot: ToggleSnapshot | None) -> None:
    """Install (or with ``None`` remove) the snapshot used by every policy in this thread."""
    _batch.toggles = snapshot


# The base class -----------------------------------------------------------------------------


class CampaignPolicy(Policy):
    """An ACE policy with a plugin name, validated parameters and a default on/off state.

    Subclasses implement :meth:`evaluate` (the rule, given cleaned parameters), and may
    implement :meth:`prefetch` to load what a batch of messages needs in O(1) queries.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    enabled_by_default: ClassVar[bool] = False
    parameters_form: ClassVar[type[forms.Form] | None] = None

    def __init__(self) -> None:
        self._local = threading.local()

    @classmethod
    def clean_parameters(cls, parameters: Any) -> dict:
        """Validate toggle parameters through ``parameters_form`` (defaults filled in)."""
        return clean_parameters_with(cls.parameters_form, parameters)

    @classmethod
    def default_toggle(cls) -> EffectiveToggle:
        if not cls.enabled_by_default:
            return EffectiveToggle(enabled=False)
        return EffectiveToggle(enabled=True, parameters=cls.clean_parameters({}))

    @classmethod
    def parameters_help(cls) -> str:
        if cls.parameters_form is None:
            return "no parameters"
        return "; ".join(
            f"{name} (default {field.initial!r})"
            + (f": {field.help_text}" if field.help_text else "")
            for name, field in cls.parameters_form.base_fields.items()
        )

    # ACE calls this when the policy is in ACE_ENABLED_POLICIES.
    def check(self, message: Message) -> PolicyResult:
        toggle = current_toggles().effective(type(self), self.name, message)
        return self.check_with(message, toggle)

    def check_with(self, message: Message, toggle: EffectiveToggle) -> PolicyResult:
        """Apply the rule if the toggle is on (a misconfigured toggle denies everything)."""
        if not toggle.enabled:
            return allow()
        if toggle.error:
            return deny(MISCONFIGURED.format(name=self.name, error=toggle.error))
        return self.evaluate(message, toggle.parameters)

    def evaluate(self, message: Message, parameters: dict) -> PolicyResult:
        raise NotImplementedError

    # -- per-batch preloading -------------------------------------------------------------
    def prefetch(self, messages: Sequence[Message]) -> None:
        """Load what :meth:`evaluate` needs for all ``messages`` at once (default: nothing)."""

    def clear_prefetch(self) -> None:
        self._local.__dict__.clear()

    def _cache(self) -> dict | None:
        return getattr(self._local, "cache", None)
