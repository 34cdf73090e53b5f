"""The three operator roles as Django groups, and the permissions each one gets.

Used by the data migrations (0003_groups, 0005_approval_digest_and_roles) and by
``manage.py setup_groups``; all are idempotent and only ever add the listed permissions (a
permission an admin added by hand is kept).

Who may do what (README, "The operator's path"): Operators compose, preview, test-send and
schedule; Approvers approve, and preview and dry-run what they approve (no test send: that is
a send); Auditors read the delivery log and export it -- no preview (it shows any user's address
and context), no test send, no dry run, no edit.
"""

from __future__ import annotations

from typing import Any

OPERATORS = "Operators"
APPROVERS = "Approvers"
AUDITORS = "Auditors"

_VIEW_LOG = [
    "campaigns.view_delivery",
    "campaigns.view_campaignrun",
    "campaigns.view_campaign",
    "campaigns.view_messagetypedefinition",
]

#: Permissions created by a migration after 0003_groups, which already calls
#: :func:`setup_groups`: that early call skips them, the later migration adds them.
ADDED_AFTER_0003 = frozenset(
    {"campaigns.preview_campaign", "campaigns.preview_messagetypedefinition"}
)

#: group name -> "app_label.codename" permissions.
GROUP_PERMISSIONS: dict[str, list[str]] = {
    # Compose message types and campaigns, switch policies, preview, test-send, schedule.
    OPERATORS: [
        *_VIEW_LOG,
        "campaigns.add_messagetypedefinition",
        "campaigns.change_messagetypedefinition",
        "campaigns.delete_messagetypedefinition",
        "campaigns.test_send_messagetypedefinition",
        "campaigns.preview_messagetypedefinition",
        "campaigns.add_templatepart",
        "campaigns.change_templatepart",
        "campaigns.delete_templatepart",
        "campaigns.view_templatepart",
        "campaigns.add_campaign",
        "campaigns.change_campaign",
        "campaigns.test_send_campaign",
        "campaigns.preview_campaign",
        "campaigns.schedule_campaign",
        "campaigns.resend_unknown_campaign",
        "campaigns.view_recipientsource",
        "campaigns.add_recipientsource",
        "campaigns.change_recipientsource",
        "campaigns.view_recipientlist",
        "campaigns.add_recipientlist",
        "campaigns.change_recipientlist",
        "campaigns.view_recipientlistentry",
        "campaigns.add_recipientlistentry",
        "campaigns.change_recipientlistentry",
        "campaigns.delete_recipientlistentry",
        "campaigns.view_policytoggle",
        "campaigns.add_policytoggle",
        "campaigns.change_policytoggle",
        "campaigns.view_optout",
    ],
    # Approve campaigns (someone else's), reading, previewing and dry-running what they approve.
    APPROVERS: [
        *_VIEW_LOG,
        "campaigns.approve_campaign",
        "campaigns.preview_campaign",
        "campaigns.preview_messagetypedefinition",
        "campaigns.view_templatepart",
        "campaigns.view_recipientsource",
        "campaigns.view_recipientlist",
        "campaigns.view_policytoggle",
    ],
    # Read the delivery log and export it; nothing else.
    AUDITORS: list(_VIEW_LOG),
}


def setup_groups(
    group_model: Any, permission_model: Any, *, require_all: bool = False
) -> dict[str, int]:
    """Create the groups and add their permissions; returns {group: permissions added}.

    Takes the models as arguments so a migration can pass its historical models. Raises
    LookupError naming any permission that does not exist (a typo or a missing migration);
    one of :data:`ADDED_AFTER_0003` is skipped instead unless ``require_all``.
    """
    added: dict[str, int] = {}
    for group_name, perms in GROUP_PERMISSIONS.items():
        group, _created = group_model.objects.get_or_create(name=group_name)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".", 1)
            found = permission_model.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if found is None and perm in ADDED_AFTER_0003 and not require_all:
                continue
            if found is None:
                raise LookupError(f"Permission {perm} does not exist (group {group_name}).")
            wanted.append(found)
        existing = set(group.permissions.values_list("pk", flat=True))
        missing = [p for p in wanted if p.pk not in existing]
        group.permissions.add(*missing)
        added[group_name] = len(missing)
    return added
