"""Message types: database ones with their templates edited inline, code-defined ones listed
read-only; preview and test send."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path
from django.utils.html import format_html, format_html_join

from campaigns import selectors
from campaigns.admin.campaigns import report_withdrawn_approvals
from campaigns.admin.previews import message_type_preview, preview_response, test_send_response
from campaigns.forms import (
    ChannelPartsFormSet,
    EmailTemplatePartForm,
    MessageTypeDefinitionForm,
    PreviewForm,
    PushTemplatePartForm,
)
from campaigns.models import ChannelChoice, MessageTypeDefinition, TemplatePart
from campaigns.services import approvals
from campaigns.services import message_types as message_type_services
from campaigns.services import previews as preview_services

MSG_SYNC_FAILED = "Could not list the code-defined message types: %(error)s"


class TemplatePartInline(admin.StackedInline):
    """The parts of one channel; subclasses pick the channel."""

    model = TemplatePart
    formset = ChannelPartsFormSet
    fields = ["channel", "filename", "language", "content"]
    extra = 0
    channel: str = ""

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).filter(channel=self.channel)

    def initial_parts(self, obj: MessageTypeDefinition | None) -> list[dict[str, str]]:
        """Blank forms for the required files when the channel has no part yet."""
        if self.channel != ChannelChoice.EMAIL:
            return []
        if obj is not None and obj.pk and obj.template_parts.filter(channel=self.channel).exists():
            return []
        return [
            {"channel": self.channel, "filename": filename, "language": ""}
            for filename in message_type_services.REQUIRED_FILES[self.channel]
        ]

    def get_extra(self, request: HttpRequest, obj=None, **kwargs: Any) -> int:
        return len(self.initial_parts(obj))


class EmailTemplatePartInline(TemplatePartInline):
    form = EmailTemplatePartForm
    channel = ChannelChoice.EMAIL
    verbose_name = "email template"
    verbose_name_plural = (
        "email templates (subject, text and HTML bodies are required for “any language”;"
        " from name and head HTML may stay empty)"
    )


class PushTemplatePartInline(TemplatePartInline):
    form = PushTemplatePartForm
    channel = ChannelChoice.PUSH
    verbose_name = "push notification template"
    verbose_name_plural = "push notification templates (title and body)"


@admin.register(MessageTypeDefinition)
class MessageTypeDefinitionAdmin(admin.ModelAdmin):
    """Message types: database ones are edited here; code-defined ones are listed read-only."""

    form = MessageTypeDefinitionForm
    list_display = ["__str__", "source", "description", "channels_display", "updated_at"]
    list_filter = ["source"]
    search_fields = ["app_label", "name", "description"]
    readonly_fields = [
        "source",
        "code_path",
        "template_files",
        "last_edited_by",
        "created_at",
        "updated_at",
    ]
    inlines = [EmailTemplatePartInline, PushTemplatePartInline]
    change_form_template = "admin/campaigns/messagetypedefinition/change_form.html"

    def get_fieldsets(self, request: HttpRequest, obj=None):
        main = ["app_label", "name", "description", "default_language", "sample_context"]
        if obj is not None and obj.source == MessageTypeDefinition.Source.CODE:
            return [
                (None, {"fields": ["source", "code_path", *main]}),
                ("Templates (files)", {"fields": ["template_files"]}),
                ("Dates", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
            ]
        return [
            (None, {"fields": [*main, "last_edited_by"]}),
            ("Dates", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        if obj is not None and obj.source == MessageTypeDefinition.Source.CODE:
            return [*self.readonly_fields, *MessageTypeDefinitionForm.Meta.fields]
        return self.readonly_fields

    def get_inlines(self, request: HttpRequest, obj):
        if obj is not None and obj.source == MessageTypeDefinition.Source.CODE:
            return []
        return self.inlines

    def get_formset_kwargs(self, request: HttpRequest, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, TemplatePartInline):
            kwargs["initial"] = inline.initial_parts(obj)
        return kwargs

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        if obj is not None and obj.source == MessageTypeDefinition.Source.CODE:
            return False  # mirrored from code; the page is view-only
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        if obj is not None and obj.source == MessageTypeDefinition.Source.CODE:
            return False
        return super().has_delete_permission(request, obj)

    def has_test_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.test_send_messagetypedefinition")

    def has_preview_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("campaigns.preview_messagetypedefinition")

    def changelist_view(self, request: HttpRequest, extra_context=None):
        # Keep code-defined types listed (cheap, idempotent upsert).
        try:
            message_type_services.message_type_sync_code_defined()
        except Exception as exc:  # a broken plugin must not hide the list
            self.message_user(request, MSG_SYNC_FAILED % {"error": exc}, messages.ERROR)
        return super().changelist_view(request, extra_context)

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        message_type_services.message_type_fill_optional_parts(message_type=form.instance)
        # The editor can't approve what uses it; approvals it no longer covers are withdrawn.
        changed = not change or form.has_changed() or any(f.has_changed() for f in formsets)
        withdrawn = approvals.content_edited(
            user=request.user, message_type=form.instance, changed=changed
        )
        report_withdrawn_approvals(self, request, withdrawn, what=f"message type “{form.instance}”")

    @admin.display(description="channels")
    def channels_display(self, obj: MessageTypeDefinition) -> str:
        return ", ".join(selectors.message_type_channels(definition=obj)) or "—"

    @admin.display(description="template files")
    def template_files(self, obj: MessageTypeDefinition) -> str:
        rows = []
        for channel in ChannelChoice.values:
            missing = set(selectors.message_type_missing_templates(definition=obj, channel=channel))
            for template_path in selectors.message_type_template_paths(
                definition=obj, channel=channel
            ):
                rows.append((template_path, "missing" if template_path in missing else "found"))
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><td><code>{}</code></td><td>{}</td></tr>", rows),
        )

    # -- preview and test send -------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="{}_{}_preview".format(*info),
            ),
            path(
                "<path:object_id>/test-send/",
                self.admin_site.admin_view(self.test_send_view),
                name="{}_{}_test_send".format(*info),
            ),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_test_send"] = self.has_test_send_permission(request)
        context["can_preview"] = self.has_preview_permission(request)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        definition = get_object_or_404(MessageTypeDefinition, pk=object_id)
        # Shows any user's address and context: composing and approving roles only.
        if not self.has_preview_permission(request):
            raise PermissionDenied
        form = PreviewForm(request.GET or None)
        preview = None
        if form.is_valid() or not request.GET:
            user = (form.cleaned_data.get("recipient") if form.is_bound else None) or request.user
            preview = message_type_preview(
                definition=definition,
                recipient=preview_services.recipient_for_user(user),
                language=(form.cleaned_data.get("language") if form.is_bound else "") or "",
            )
        return preview_response(self, request, definition, form, preview, definition)

    def test_send_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        definition = get_object_or_404(MessageTypeDefinition, pk=object_id)
        return test_send_response(
            self,
            request,
            definition,
            lambda: preview_services.message_type_test_send(
                definition=definition, user=request.user, language=request.POST.get("language", "")
            ),
        )
