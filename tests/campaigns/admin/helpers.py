"""Helpers for admin tests: build the POST a browser would send from a rendered admin form."""

from __future__ import annotations

import json
from typing import Any


def _value(bound) -> Any:
    value = bound.value()
    widget = bound.field.widget
    if value is None:
        return None if getattr(widget, "input_type", "") == "checkbox" else ""
    if isinstance(value, bool):
        return "on" if value else None
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if isinstance(value, (dict,)):
        return json.dumps(value)
    return str(value)


def _form_fields(form, data: dict) -> None:
    for name in form.fields:
        bound = form[name]
        value = _value(bound)
        if value is not None:
            data[bound.html_name] = value


def admin_form_data(response, **overrides: Any) -> dict[str, Any]:
    """The add/change page's form as POST data (main form, every inline), plus overrides.

    Overrides use the field's HTML name; ``None`` removes a key.
    """
    context = response.context
    data: dict[str, Any] = {}
    _form_fields(context["adminform"].form, data)
    for inline in context["inline_admin_formsets"]:
        formset = inline.formset
        _form_fields(formset.management_form, data)
        for form in formset.forms:
            _form_fields(form, data)
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def inline_prefixes(response) -> list[str]:
    """The inline formsets' prefixes, in page order."""
    return [inline.formset.prefix for inline in response.context["inline_admin_formsets"]]


def messages_of(response) -> list[str]:
    """The django.contrib.messages texts attached to a (followed) response."""
    return [str(m) for m in response.context["messages"]] if response.context else []
