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

Modules: :mod:`~campaigns.policies.base` (results, toggles, :class:`CampaignPolicy`),
:mod:`~campaigns.policies.plugins` (discovery), one module per built-in policy
(:mod:`~campaigns.policies.optout`, :mod:`~campaigns.policies.expiry`,
:mod:`~campaigns.policies.frequency_cap`, :mod:`~campaigns.policies.quiet_hours`,
:mod:`~campaigns.policies.toggle_deny`) and :mod:`~campaigns.policies.clock` (the time they
read; tests patch ``campaigns.policies.clock.now``). Everything is importable from
``campaigns.policies``, which is also what the entry points in ``pyproject.toml`` name.
"""

from __future__ import annotations

import datetime as dt

from campaigns.parameters import NO_PARAMETERS, PARAMETERS_NOT_OBJECT, UNKNOWN_PARAMETERS
from campaigns.policies import clock
from campaigns.policies.base import (
    ALL_CHANNELS,
    MISCONFIGURED,
    CampaignPolicy,
    EffectiveToggle,
    ToggleSnapshot,
    allow,
    clean_parameters_with,
    current_toggles,
    defer,
    deny,
    recipient_identity,
    set_batch_toggles,
)
from campaigns.policies.expiry import ExpiryPolicy
from campaigns.policies.frequency_cap import FrequencyCapForm, FrequencyCapPolicy
from campaigns.policies.optout import OptOutPolicy
from campaigns.policies.plugins import (
    UNKNOWN_POLICY,
    ace_enabled_policy_names,
    installed_policy_classes,
    policy_instance,
    policy_instances,
    reset_plugin_caches,
)
from campaigns.policies.quiet_hours import QuietHoursForm, QuietHoursPolicy
from campaigns.policies.toggle_deny import PolicyToggleDenyPolicy


def now() -> dt.datetime:
    """The policies' current time: :func:`campaigns.policies.clock.now`, looked up at each call
    so that a test moving the clock moves it here too."""
    return clock.now()


__all__ = [
    "ALL_CHANNELS",
    "MISCONFIGURED",
    "NO_PARAMETERS",
    "PARAMETERS_NOT_OBJECT",
    "UNKNOWN_PARAMETERS",
    "UNKNOWN_POLICY",
    "CampaignPolicy",
    "EffectiveToggle",
    "ExpiryPolicy",
    "FrequencyCapForm",
    "FrequencyCapPolicy",
    "OptOutPolicy",
    "PolicyToggleDenyPolicy",
    "QuietHoursForm",
    "QuietHoursPolicy",
    "ToggleSnapshot",
    "ace_enabled_policy_names",
    "allow",
    "clean_parameters_with",
    "current_toggles",
    "defer",
    "deny",
    "installed_policy_classes",
    "now",
    "policy_instance",
    "policy_instances",
    "recipient_identity",
    "reset_plugin_caches",
    "set_batch_toggles",
]
