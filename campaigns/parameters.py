"""Plugin parameters: the JSON object stored with a policy toggle or a recipient source,
validated by the Django form the plugin declares (``parameters_form``).

Policies (:mod:`campaigns.policies`) and recipient resolvers (:mod:`campaigns.resolvers`) both
validate theirs here, so the rules and the messages are the same for both.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import ngettext_lazy

PARAMETERS_NOT_OBJECT = "Parameters must be a JSON object."
NO_PARAMETERS = "This {kind} takes no parameters (got {names})."
UNKNOWN_PARAMETERS = ngettext_lazy(
    "Unknown parameter: %(names)s. Allowed: %(allowed)s.",
    "Unknown parameters: %(names)s. Allowed: %(allowed)s.",
    "count",
)


def parameters_clean(
    *,
    form_class: type[forms.Form] | None,
    parameters: Any,
    kind: str,
    initial_defaults: bool,
) -> dict:
    """Validate ``parameters`` (a JSON object) with ``form_class``; return its cleaned data.

    ``kind`` names the plugin in the messages ("policy", "resolver"). With
    ``initial_defaults``, missing values take the fields' ``initial``. Errors name the
    parameter ("group: Select a valid choice.").
    """
    if parameters in (None, ""):
        parameters = {}
    if not isinstance(parameters, dict):
        raise ValidationError(PARAMETERS_NOT_OBJECT, code="not_object")
    if form_class is None:
        if parameters:
            raise ValidationError(
                NO_PARAMETERS.format(kind=kind, names=", ".join(sorted(parameters))),
                code="unexpected",
            )
        return {}
    data = dict(parameters)
    if initial_defaults:
        for name, field in form_class.base_fields.items():
            if name not in data and field.initial is not None:
                data[name] = field.initial
    form = form_class(data=data)
    unknown = sorted(set(parameters) - set(form.fields))
    if unknown:
        raise ValidationError(
            UNKNOWN_PARAMETERS
            % {
                "names": ", ".join(unknown),
                "allowed": ", ".join(form.fields),
                "count": len(unknown),
            },
            code="unknown_parameter",
        )
    if not form.is_valid():
        raise ValidationError(
            [
                ValidationError(f"{name}: {message}" if name != "__all__" else message)
                for name, messages in form.errors.items()
                for message in messages
            ]
        )
    return dict(form.cleaned_data)
