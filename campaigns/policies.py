"""ACE policy plugins of the campaigns app: opt-out, expiry, frequency cap and quiet hours,
switched on or off (globally or per message type) by ``PolicyToggle`` rows.

How it fits together:

* Every policy here is a :class:`CampaignPolicy`: an ACE ``Policy`` with a plugin ``name``
  (its entry point in ``openedx.ace.policy``), validated ``parameters`` and a default state.
* ``ACE_ENABLED_POLICIES`` lists ``campaigns_optout`` and ``campaigns_toggles``. A campaign
  policy that ACE runs directly (opt-out) looks up its own toggle for the message's type.
  :class:`PolicyToggleDenyPolicy` (``campaigns_toggles``) runs every *other* installed policy
  plugin whose effective toggle is on (expiry and the campaign policies that are on by
  default, frequency cap and quiet hours when an operator turns them on, and third-party
  plugins), so each policy runs at most once per message.
* The effective toggle of a policy for a message of type T is the toggle for T if there is
  one, else the global toggle, else the policy's default.
* Denials carry a ``reason`` (``ace.policy.PolicyResult.reason``), recorded in the delivery log.
* Quiet hours postpone rather than deny: their result carries ``defer_until`` (the end of the
  quiet period in the recipient's zone), so ACE reports RETRY at that time and the dispatcher
  sends the message then (unless the run has expired by then).
* Batch speed: :func:`campaigns.services.policies.policies_prefetched` calls
  :meth:`CampaignPolicy.prefetch` with a batch of messages; the toggles, opt-outs and recent
  delivery counts of the whole batch are then loaded in one query each, and ``check()`` reads
  them from memory. Without a prefetch, ``check()`` queries per message (fine for ``ace.send``).

Policies read these ``message.options`` keys (set by the dispatcher): ``campaign_message_type_id``
(the ``MessageTypeDefinition`` id; else it is looked up by ``app_label``/``name``),
``recipient_time_zone`` and ``campaign_time_zone``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import attrs
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone
from stevedore import ExtensionManager

from ace.channel import ChannelType
from ace.policy import POLICY_PLUGIN_NAMESPACE, Policy, PolicyResult
from campaigns.models import Delivery, MessageTypeDefinition, OptOut, PolicyToggle
from campaigns.parameters import (  # noqa: F401 - importable from here too
    NO_PARAMETERS,
    PARAMETERS_NOT_OBJECT,
    UNKNOWN_PARAMETERS,
    parameters_clean,
)

log = logging.getLogger(__name__)

ALL_CHANNELS: frozenset[ChannelType] = frozenset(ChannelType)

UNKNOWN_POLICY = "Unknown policy {name!r}; installed: {installed}."
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


def now() -> dt.datetime:
    """The current time; one place for tests to move the clock."""
    return timezone.now()


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

    def message_type_id(self, message: Any) -> int | None:
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

    def type_key(self, message: Any) -> int | None:
        """What :meth:`effective` depends on in a message: its type id, and only when some
        toggle is per type."""
        return self.message_type_id(message) if self._typed_policies else None

    def policy_names(self) -> set[str]:
        """Every policy that has at least one toggle."""
        return set(self._global) | {name for name, _ in self._per_type}

    def effective(self, policy_cls: type, name: str, message: Any) -> EffectiveToggle:
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


# Plugins ------------------------------------------------------------------------------------


def _on_load_failure(manager: Any, entrypoint: Any, exc: Exception) -> None:
    log.error("ACE policy plugin %s failed to load: %s", entrypoint, exc)


@functools.cache
def installed_policy_classes() -> dict[str, type]:
    """Every installed ``openedx.ace.policy`` plugin class, by name (enabled in ACE or not)."""
    manager = ExtensionManager(
        namespace=POLICY_PLUGIN_NAMESPACE,
        invoke_on_load=False,
        on_load_failure_callback=_on_load_failure,
    )
    return dict(sorted((ext.name, ext.plugin) for ext in manager))


_instances_lock = threading.Lock()
_instances: dict[str, Policy] = {}


def policy_instance(name: str) -> Policy:
    """One shared instance per plugin (policies are stateless apart from prefetch caches,
    which are per thread)."""
    with _instances_lock:
        if name not in _instances:
            _instances[name] = installed_policy_classes()[name]()
        return _instances[name]


def reset_plugin_caches() -> None:
    """Forget loaded plugins (tests, settings changes)."""
    installed_policy_classes.cache_clear()
    with _instances_lock:
        _instances.clear()


def ace_enabled_policy_names() -> list[str]:
    return list(getattr(settings, "ACE_ENABLED_POLICIES", []))


# The policies -------------------------------------------------------------------------------


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
    def check(self, message: Any) -> PolicyResult:
        toggle = current_toggles().effective(type(self), self.name, message)
        return self.check_with(message, toggle)

    def check_with(self, message: Any, toggle: EffectiveToggle) -> PolicyResult:
        """Apply the rule if the toggle is on (a misconfigured toggle denies everything)."""
        if not toggle.enabled:
            return allow()
        if toggle.error:
            return deny(MISCONFIGURED.format(name=self.name, error=toggle.error))
        return self.evaluate(message, toggle.parameters)

    def evaluate(self, message: Any, parameters: dict) -> PolicyResult:
        raise NotImplementedError

    # -- per-batch preloading -------------------------------------------------------------
    def prefetch(self, messages: Sequence[Any]) -> None:
        """Load what :meth:`evaluate` needs for all ``messages`` at once (default: nothing)."""

    def clear_prefetch(self) -> None:
        self._local.__dict__.clear()

    def _cache(self) -> dict | None:
        return getattr(self._local, "cache", None)


def _recipient_identity(message: Any) -> tuple[int | None, str]:
    recipient = message.recipient
    if recipient is None:
        return None, ""
    user_id = recipient.lms_user_id
    try:
        user_id = int(user_id) if user_id not in (None, "") else None
    except (TypeError, ValueError):
        user_id = None
    return user_id, (recipient.email_address or "").strip().lower()


class OptOutPolicy(CampaignPolicy):
    """Deny every channel to an address (or user) that unsubscribed from this message type or
    from everything. On by default; a toggle can turn it off, e.g. for a transactional type."""

    name = "campaigns_optout"
    label = "Opt-out (unsubscribes)"
    enabled_by_default = True

    _fields = ("user_id", "email", "message_type__app_label", "message_type__name")

    def prefetch(self, messages: Sequence[Any]) -> None:
        user_ids: set[int] = set()
        emails: set[str] = set()
        for message in messages:
            user_id, email = _recipient_identity(message)
            if user_id is not None:
                user_ids.add(user_id)
            if email:
                emails.add(email)
        by_user: dict[int, set[tuple | None]] = defaultdict(set)
        by_email: dict[str, set[tuple | None]] = defaultdict(set)
        if user_ids or emails:
            rows = OptOut.objects.filter(Q(user_id__in=user_ids) | Q(email__in=emails))
            for user_id, email, app_label, type_name in rows.values_list(*self._fields):
                scope = (app_label, type_name) if type_name is not None else None
                if user_id is not None:
                    by_user[user_id].add(scope)
                by_email[email].add(scope)
        self._local.cache = {
            "users": user_ids,
            "emails": emails,
            "by_user": by_user,
            "by_email": by_email,
        }

    def opted_out_scopes(self, user_id: int | None, email: str) -> set[tuple[str, str] | None]:
        """The message types (``(app_label, name)``; ``None`` = everything) the recipient
        unsubscribed from: from the batch cache when prefetched, else one query."""
        cache = self._cache()
        if (
            cache is not None
            and (user_id is None or user_id in cache["users"])
            and (not email or email in cache["emails"])
        ):
            scopes = set(cache["by_email"].get(email, ()))
            if user_id is not None:
                scopes |= cache["by_user"].get(user_id, set())
            return scopes
        query = Q(email=email) if email else Q(pk__in=[])
        if user_id is not None:
            query |= Q(user_id=user_id)
        return {
            (app_label, type_name) if type_name is not None else None
            for _, _, app_label, type_name in OptOut.objects.filter(query).values_list(
                *self._fields
            )
        }

    def evaluate(self, message: Any, parameters: dict) -> PolicyResult:
        user_id, email = _recipient_identity(message)
        if user_id is None and not email:
            return allow()
        scopes = self.opted_out_scopes(user_id, email)
        if None in scopes:
            return deny("unsubscribed from all messages")
        if (message.app_label, message.name) in scopes:
            return deny(f"unsubscribed from {message.app_label}/{message.name}")
        return allow()


class ExpiryPolicy(CampaignPolicy):
    """Deny a message whose ``expiration_time`` has passed. On by default."""

    name = "campaigns_expiry"
    label = "Expiry"
    enabled_by_default = True

    def evaluate(self, message: Any, parameters: dict) -> PolicyResult:
        expires = message.expiration_time
        if expires is not None and now() >= expires:
            return deny(f"expired at {expires.isoformat()}")
        return allow()


class FrequencyCapForm(forms.Form):
    """Parameters of the frequency cap."""

    max_messages = forms.IntegerField(
        min_value=1, initial=3, help_text="messages a recipient may receive per period"
    )
    period_hours = forms.IntegerField(
        min_value=1, max_value=24 * 366, initial=24, help_text="length of the period"
    )


class FrequencyCapPolicy(CampaignPolicy):
    """Deny when the recipient already received ``max_messages`` messages (across campaigns)
    in the last ``period_hours``, counted from sent deliveries (one per run, whatever the
    channels), not counting the message's own run."""

    name = "campaigns_frequency_cap"
    label = "Frequency cap"
    parameters_form = FrequencyCapForm

    def _sent_rows(self, since: dt.datetime, user_ids: set[int], emails: set[str]):
        query = Q(pk__in=[])
        if user_ids:
            query |= Q(user_id__in=user_ids)
        if emails:
            query |= Q(user_id__isnull=True, email__in=emails)
        return (
            Delivery.objects.filter(query, status=Delivery.Status.SENT, sent_at__gte=since)
            .values_list("user_id", "email", "run_id", "send_uuid")
            .distinct()
        )

    def prefetch(self, messages: Sequence[Any]) -> None:
        # The longest period any toggle may use for these messages bounds the query; counts
        # are then recomputed per message for its own period.
        snapshot = current_toggles()
        periods = [
            snapshot.effective(type(self), self.name, m).parameters.get("period_hours", 0)
            for m in messages
        ]
        longest = max(periods, default=0)
        user_ids: set[int] = set()
        emails: set[str] = set()
        for message in messages:
            user_id, email = _recipient_identity(message)
            if user_id is not None:
                user_ids.add(user_id)
            elif email:
                emails.add(email)
        sends: dict[tuple[str, Any], list[tuple[Any, Any]]] = defaultdict(list)
        if longest and (user_ids or emails):
            since = now() - dt.timedelta(hours=longest)
            rows = self._sent_rows(since, user_ids, emails).values_list(
                "user_id", "email", "run_id", "send_uuid", "sent_at"
            )
            seen = set()
            for user_id, email, run_id, send_uuid, sent_at in rows:
                key = ("user", user_id) if user_id is not None else ("email", email.lower())
                if (key, run_id) in seen:
                    continue
                seen.add((key, run_id))
                sends[key].append((send_uuid, sent_at))
        self._local.cache = {
            "users": user_ids,
            "emails": emails,
            "since_hours": longest,
            "sends": sends,
        }

    def _count(self, message: Any, period_hours: int) -> int:
        user_id, email = _recipient_identity(message)
        since = now() - dt.timedelta(hours=period_hours)
        own = message.send_uuid
        cache = self._cache()
        covered = (
            cache is not None
            and period_hours <= cache["since_hours"]
            and (
                (user_id is not None and user_id in cache["users"])
                or (user_id is None and email in cache["emails"])
            )
        )
        if covered:
            key = ("user", user_id) if user_id is not None else ("email", email)
            return sum(
                1
                for send_uuid, sent_at in cache["sends"].get(key, ())
                if sent_at >= since and (own is None or send_uuid != own)
            )
        if user_id is None and not email:
            return 0
        rows = self._sent_rows(
            since,
            {user_id} if user_id is not None else set(),
            {email} if user_id is None else set(),
        )
        if own is not None:
            rows = rows.exclude(send_uuid=own)
        return rows.values("run_id").distinct().count()

    def evaluate(self, message: Any, parameters: dict) -> PolicyResult:
        limit = parameters["max_messages"]
        hours = parameters["period_hours"]
        count = self._count(message, hours)
        if count >= limit:
            return deny(f"frequency cap: {count} messages in the last {hours} h (max {limit})")
        return allow()


def _time_zone_choices() -> list[tuple[str, str]]:
    return [("", "---")] + [(name, name) for name in sorted(zoneinfo.available_timezones())]


class QuietHoursForm(forms.Form):
    """Parameters of quiet hours."""

    start_hour = forms.IntegerField(
        min_value=0, max_value=23, initial=21, help_text="local hour the quiet period starts"
    )
    end_hour = forms.IntegerField(
        min_value=0, max_value=23, initial=8, help_text="local hour it ends (exclusive)"
    )
    channels = forms.MultipleChoiceField(
        choices=[(c.value, c.value) for c in ChannelType],
        initial=[c.value for c in ChannelType],
        help_text="channels kept quiet",
    )
    default_time_zone = forms.ChoiceField(
        choices=_time_zone_choices,
        required=False,
        initial="",
        help_text="when neither recipient nor campaign has one (default: settings.TIME_ZONE)",
    )

    def clean(self) -> dict:
        data = super().clean()
        if data.get("start_hour") is not None and data.get("start_hour") == data.get("end_hour"):
            raise ValidationError("start_hour and end_hour must differ.")
        return data


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


class QuietHoursPolicy(CampaignPolicy):
    """Postpone, during the quiet hours of the recipient's local time, to the end of those
    hours (``defer_until``): a message is delivered when the recipient's morning comes, not
    dropped. Local time is the recipient's time zone (``options["recipient_time_zone"]``),
    else the campaign's (``options["campaign_time_zone"]``), else the toggle's
    ``default_time_zone``, else ``settings.TIME_ZONE``."""

    name = "campaigns_quiet_hours"
    label = "Quiet hours"
    parameters_form = QuietHoursForm

    @staticmethod
    def time_zone_for(message: Any, parameters: dict) -> zoneinfo.ZoneInfo:
        options = message.options or {}
        for candidate in (
            options.get("recipient_time_zone"),
            options.get("campaign_time_zone"),
            parameters.get("default_time_zone"),
            settings.TIME_ZONE,
        ):
            zone = _zone(candidate or "")
            if zone is not None:
                return zone
        return zoneinfo.ZoneInfo("UTC")

    @staticmethod
    def is_quiet(hour: int, start: int, end: int) -> bool:
        if start < end:
            return start <= hour < end
        return hour >= start or hour < end  # the period wraps around midnight

    @staticmethod
    def quiet_until(local: dt.datetime, end: int) -> dt.datetime:
        """The first ``end:00`` local wall-clock time after ``local`` (aware, any zone), in
        UTC. Across a DST change the wall-clock hour is kept (07:00 stays 07:00); an hour
        that a DST change skips that day maps to the moment the clocks jump.
        """
        zone = local.tzinfo
        day = local.date()
        for _ in range(3):  # today or tomorrow; a third day only as a guard
            candidate = dt.datetime.combine(day, dt.time(end), tzinfo=zone)
            instant = candidate.astimezone(dt.UTC)  # a real instant, even inside a DST gap
            if instant > local:
                return instant
            day += dt.timedelta(days=1)
        raise AssertionError("unreachable: a later end hour always exists")

    def evaluate(self, message: Any, parameters: dict) -> PolicyResult:
        zone = self.time_zone_for(message, parameters)
        local = now().astimezone(zone)
        start, end = parameters["start_hour"], parameters["end_hour"]
        if not self.is_quiet(local.hour, start, end):
            return allow()
        channels = {ChannelType(c) for c in parameters["channels"]}
        return defer(
            f"quiet hours {start:02d}:00-{end:02d}:00 in {zone.key} (local time {local:%H:%M}): "
            f"postponed until {end:02d}:00 {zone.key}",
            self.quiet_until(local, end),
            channels,
        )


class PolicyToggleDenyPolicy(Policy):
    """Runs the installed policy plugins that ACE does not run itself, for which the effective
    toggle of the message's type is on; denies what any of them denies (first reason wins).

    Deferrals (``defer_until``, e.g. quiet hours) are kept: when the delegated policies only
    postpone, the result is a deferral until the latest of their times. One result cannot
    both deny some channels and postpone others, so when a channel is postponed that no
    policy denies, the denied channels are postponed too (they are checked again then, and
    denied then if the policy still says so): nothing is dropped that should have waited.
    """

    name = "campaigns_toggles"
    label = "Policy toggles"

    def delegated(
        self, message: Any, snapshot: ToggleSnapshot
    ) -> list[tuple[str, Policy, EffectiveToggle]]:
        """The (name, policy, toggle) of every policy that must run for ``message``
        (worked out once per message type in a snapshot: toggles depend on nothing else)."""
        direct = frozenset(ace_enabled_policy_names()) | {self.name}
        key = (snapshot.type_key(message), direct)
        cached = snapshot.delegated_cache.get(key)
        if cached is None:
            cached = []
            for name, cls in installed_policy_classes().items():
                if name in direct:
                    continue
                toggle = snapshot.effective(cls, name, message)
                if toggle.enabled:
                    cached.append((name, policy_instance(name), toggle))
            snapshot.delegated_cache[key] = cached
        return list(cached)

    def check_each(self, message: Any) -> list[tuple[str, PolicyResult]]:
        """Each delegated policy's own result (the dry run reports them one by one)."""
        snapshot = current_toggles()
        results = []
        for name, policy, toggle in self.delegated(message, snapshot):
            if isinstance(policy, CampaignPolicy):
                results.append((name, policy.check_with(message, toggle)))
            else:
                results.append((name, policy.check(message)))
        return results

    def check(self, message: Any) -> PolicyResult:
        denied: set[ChannelType] = set()
        deferred: set[ChannelType] = set()
        until: dt.datetime | None = None
        reasons = []
        for name, result in self.check_each(message):
            channels = set(result.deny)
            if result.defer_until is not None:
                new = channels - denied - deferred
                deferred |= channels
                until = result.defer_until if until is None else max(until, result.defer_until)
            else:
                new = channels - denied
                denied |= channels
            if new:
                reasons.append(f"{name}: {result.reason}" if result.reason else name)
        if deferred - denied:
            return PolicyResult(
                deny=denied | deferred, reason="; ".join(reasons), defer_until=until
            )
        return PolicyResult(deny=denied, reason="; ".join(reasons))

    def prefetch(self, messages: Sequence[Any]) -> None:
        """Prefetch every delegated policy that is on for at least one of the messages."""
        snapshot = current_toggles()
        names = set()
        for message in messages:
            names.update(name for name, _, _ in self.delegated(message, snapshot))
        for name in sorted(names):
            policy = policy_instance(name)
            if hasattr(policy, "prefetch"):
                policy.prefetch(messages)

    def clear_prefetch(self) -> None:
        with _instances_lock:
            instances = list(_instances.values())
        for policy in instances:
            if hasattr(policy, "clear_prefetch"):
                policy.clear_prefetch()
