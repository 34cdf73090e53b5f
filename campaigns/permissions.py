"""The three operator roles as Django groups, and the permissions each one gets.

Used by the data migration (0003_groups) and by ``manage.py setup_groups``; both are idempotent
and only ever add the listed permissions (a permission an admin added by hand is kept).
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

#: group name -> "app_label.codename" permissions.
GROUP_PERMISSIONS: dict[str, list[str]] = {
    # Compose message types and campaigns, switch policies, preview, test-send, schedule.
    OPERATORS: [
        *_VIEW_LOG,
        "campaigns.add_messagetypedefinition",
        "campaigns.change_messagetypedefinition",
        "campaigns.delete_messagetypedefinition",
        "campaigns.test_send_messagetypedefinition",
        "campaigns.add_templatepart",
        "campaigns.change_templatepart",
        "campaigns.delete_templatepart",
        "campaigns.view_templatepart",
        "campaigns.add_campaign",
        "campaigns.change_campaign",
        "campaigns.test_send_campaign",
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
    # Approve campaigns (someone else's), reading what they approve.
    APPROVERS: [
        *_VIEW_LOG,
        "campaigns.approve_campaign",
        "campaigns.view_templatepart",
        "campaigns.view_recipientsource",
        "campaigns.view_recipientlist",
        "campaigns.view_policytoggle",
    ],
    # Read the delivery log and export it; nothing else.
    AUDITORS: list(_VIEW_LOG),
}


def setup_groups(group_model: Any, permission_model: Any) -> dict[str, int]:
    """Create the groups and add their permissions; returns {group: permissions added}.

    Takes the models as arguments so a migration can pass its historical models. Raises
    LookupError naming any permission that does not exist (a typo or a missing migration).
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
            if found is None:
                raise LookupError(f"Permission {perm} does not exist (group {group_name}).")
            wanted.append(found)
        existing = set(group.permissions.values_list("pk", flat=True))
        missing = [p for p in wanted if p.pk not in existing]
        group.permissions.add(*missing)
        added[group_name] = len(missing)
    return added
