"""
:mod:`ace.serialization` lets messages round-trip through JSON:
:class:`MessageAttributeSerializationMixin` gives ``str(obj)`` and ``Cls.from_string(s)``,
and :class:`MessageEncoder` is the JSON encoder behind it.

Two fixes over the reference, which decoded every nested dict by key name:

* decoding is driven by the class's own fields, so a context key that happens to be called
  ``uuid``, ``recipient`` or ``expiration_time`` is left exactly as it was;
* datetimes, dates, times, UUIDs and Decimals inside the free-form ``context`` and ``options``
  are written as small tagged objects (``{"$ace:datetime": "..."}``) and come back as the
  same type, so ``Cls.from_string(str(obj)) == obj`` holds for them too. Strings written by
  the reference (untagged) still decode; their values simply stay strings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Self
from uuid import UUID

import attrs
from django.utils.functional import Promise

from ace.utils import date as ace_date

#: Metadata key on an attrs field: a function turning the field's value into JSON.
ENCODER = "ace_encoder"
#: Metadata key on an attrs field: a function turning the JSON value back into the field's type.
DECODER = "ace_decoder"

_TAG_PREFIX = "$ace:"
_TAG_DECODERS: dict[str, Callable[[str], Any]] = {
    "$ace:datetime": datetime.fromisoformat,
    "$ace:date": date.fromisoformat,
    "$ace:time": time.fromisoformat,
    "$ace:uuid": UUID,
    "$ace:decimal": Decimal,
}


def encode_value(value: Any) -> Any:
    """Turn a free-form value (context, options) into JSON-ready data, tagging rich types."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else str(k)): encode_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    # datetime is a subclass of date, so it must be tested first.
    if isinstance(value, datetime):
        return {"$ace:datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$ace:date": value.isoformat()}
    if isinstance(value, time):
        return {"$ace:time": value.isoformat()}
    if isinstance(value, UUID):
        return {"$ace:uuid": str(value)}
    if isinstance(value, Decimal):
        return {"$ace:decimal": str(value)}
    if isinstance(value, Promise):
        return str(value)
    if isinstance(value, MessageAttributeSerializationMixin):
        return value.to_wire()
    # Anything else is left to MessageEncoder, which raises TypeError for unknown types.
    return value


def decode_tagged(obj: dict[str, Any]) -> Any:
    """``json.loads`` object hook: turn a tagged object back into its Python type."""
    if len(obj) == 1:
        ((key, raw),) = obj.items()
        if key.startswith(_TAG_PREFIX) and key in _TAG_DECODERS and isinstance(raw, str):
            return _TAG_DECODERS[key](raw)
    return obj


class MessageAttributeSerializationMixin:
    """
    Serialize an attrs object to a JSON string and back.

    :meth:`__str__` and :meth:`from_string` are inverses and the main interface.
    :meth:`to_json` returns the fields as a Python dictionary (nested objects as
    dictionaries), ready for :class:`MessageEncoder`.
    """

    __slots__ = ()

    def __str__(self) -> str:
        return json.dumps(self.to_wire(), cls=MessageEncoder)

    @classmethod
    def from_string(cls, string_value: str) -> Self:
        """
        Decode a JSON string produced by ``str()`` of this type.

        Args:
            string_value: The JSON string to decode.

        Returns:
            An instance of this class, equal to the one that was encoded.

        Raises:
            ValueError: If the string is not a JSON object or names unknown fields.
        """
        data = json.loads(string_value, object_hook=decode_tagged)
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}.from_string expects a JSON object, got {data!r}")
        return cls.from_wire(data)

    def to_json(self) -> dict[str, Any]:
        """
        Returns: dict
            The serializable fields of this object, nested objects as dictionaries.
        """
        return attrs.asdict(self)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready form written by ``str()``: typed fields plain, free-form values tagged."""
        out: dict[str, Any] = {}
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            encoder = field.metadata.get(ENCODER)
            out[field.name] = (
                encoder(value) if value is not None and encoder else encode_value(value)
            )
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Self:
        """Build an instance from the dictionary form, decoding each field by its own type."""
        fields = attrs.fields_dict(cls)
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"Cannot decode {cls.__name__}: unknown field(s) {unknown}")
        init_kwargs: dict[str, Any] = {}
        after_init: dict[str, Any] = {}
        for name, value in data.items():
            field = fields[name]
            decoder = field.metadata.get(DECODER)
            if value is not None and decoder is not None:
                value = decoder(value)
            if field.init:
                init_kwargs[field.alias or name] = value
            else:
                after_init[name] = value
        instance = cls(**init_kwargs)
        for name, value in after_init.items():
            setattr(instance, name, value)
        return instance


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else ace_date.deserialize(value)


#: attrs field metadata for a UUID field.
UUID_FIELD = {ENCODER: str, DECODER: _uuid}
#: attrs field metadata for a datetime field.
DATETIME_FIELD = {ENCODER: ace_date.serialize, DECODER: _datetime}


class MessageEncoder(json.JSONEncoder):
    """JSON encoder that knows UUIDs, datetimes, lazy strings and ACE objects."""

    def default(self, o: Any) -> Any:
        if isinstance(o, UUID):
            return str(o)
        if isinstance(o, datetime):
            return ace_date.serialize(o)
        if isinstance(o, date | time):
            return o.isoformat()
        if isinstance(o, Decimal):
            return str(o)
        if isinstance(o, Promise):
            return str(o)
        if isinstance(o, MessageAttributeSerializationMixin):
            return o.to_wire()
        if hasattr(o, "to_json"):
            return o.to_json()
        return super().default(o)
