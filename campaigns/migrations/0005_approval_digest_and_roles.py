"""Approval covers what is sent: the approved content digest and who last edited each part;
the preview permissions (Operators and Approvers get them, Auditors don't).

Campaigns approved before this migration have no digest: they need a new approval before
their next run (``campaigns.services.campaigns.campaign_approval_current`` is False for them).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def add_preview_permissions(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    from campaigns.permissions import setup_groups

    # Permissions are normally created after all migrations (post_migrate); make them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    setup_groups(
        apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"), require_all=True
    )


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("campaigns", "0004_delivery_cancelled"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="campaign",
            options={
                "ordering": ["-created_at"],
                "permissions": [
                    ("approve_campaign", "Can approve a campaign"),
                    ("preview_campaign", "Can preview and dry-run a campaign"),
                    ("schedule_campaign", "Can schedule, pause, resume and cancel a campaign"),
                    ("test_send_campaign", "Can send a test of a campaign to oneself"),
                    ("resend_unknown_campaign", "Can resend deliveries left unknown after a crash"),
                ],
            },
        ),
        migrations.AlterModelOptions(
            name="messagetypedefinition",
            options={
                "ordering": ["app_label", "name"],
                "permissions": [
                    ("test_send_messagetypedefinition", "Can send a test of a message type"),
                    ("preview_messagetypedefinition", "Can preview a message type"),
                ],
            },
        ),
        migrations.AddField(
            model_name="campaign",
            name="approved_digest",
            field=models.CharField(
                blank=True,
                help_text="sha256 of the approved content: campaign fields, every template part of the message type, the recipient source and its parameters.",
                max_length=64,
            ),
        ),
        migrations.AddField(
            model_name="campaign",
            name="last_edited_by",
            field=models.ForeignKey(
                blank=True,
                help_text="Who last changed what it sends (they can't approve it).",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="campaigns_last_edited",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="messagetypedefinition",
            name="last_edited_by",
            field=models.ForeignKey(
                blank=True,
                help_text="Who last changed it or its templates (they can't approve campaigns using it).",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="recipientsource",
            name="last_edited_by",
            field=models.ForeignKey(
                blank=True,
                help_text="Who last changed it (they can't approve campaigns sent to it).",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(add_preview_permissions, migrations.RunPython.noop),
    ]
