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

:meth:`~MessageAttributeSerializationMixin.from_string` takes strings from outside (a queue, a
database), so it refuses anything malformed with a :class:`ValueError` naming the field (see
:class:`DecodeError`): invalid JSON, a JSON value of the wrong type for a field (as declared by
its :data:`WIRE_TYPES` metadata), a missing required field, an unknown one, a bad tagged value,
or nesting deeper than :data:`MAX_DEPTH` levels.
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
#: Metadata key on an attrs field: the JSON types its value may have in a decoded string
#: (``str``, ``int``, ``float``, ``bool``, ``dict``, ``list``; ``None`` for null). A field
#: without it takes any JSON value.
WIRE_TYPES = "ace_wire_types"
#: The deepest nesting of objects and arrays a free-form field (context, options) may have
#: in a decoded string; deeper is refused rather than risking the interpreter's recursion limit.
MAX_DEPTH = 100

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


class DecodeError(ValueError):
    """A string that :meth:`MessageAttributeSerializationMixin.from_string` refuses.

    ``where`` names the field (``Message.recipient.lms_user_id``, ``Message.context['a'][0]``)
    and ``problem`` says what is wrong with it.
    """

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"Cannot decode {where}: {problem}")
        self.where = where
        self.problem = problem

    def inside(self, outer: str) -> DecodeError:
        """This error, as found in the field ``outer`` (``Message.recipient``) of another
        object: ``Recipient.email_address`` becomes ``Message.recipient.email_address``."""
        _cls, dot, rest = self.where.partition(".")
        return DecodeError(f"{outer}.{rest}" if dot else outer, self.problem)


_JSON_NAMES: dict[Any, str] = {
    None: "null",
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def json_type_name(value: Any) -> str:
    """How JSON calls the type of ``value`` ('an object', 'null'...), for error messages."""
    if value is None:
        return "null"
    for kind in (bool, int, float, str, list, dict):  # bool first: it is an int
        if isinstance(value, kind):
            return _JSON_NAMES[kind]
    return type(value).__name__


def check_wire_type(where: str, value: Any, types: tuple[Any, ...] | None) -> None:
    """Refuse a JSON ``value`` whose type is not one of ``types`` (``None``: null).

    Values that are not JSON types at all (a ``UUID`` in :meth:`to_json`'s output) are left
    to the field's decoder and validators; ``true``/``false`` is not an integer here.

    Raises:
        DecodeError: naming ``where`` and the types it may have.
    """
    if types is None or type(value) in types or (value is None and None in types):
        return  # the fast path: json.loads gives exact types (and True's type is bool)
    if value is None:
        pass
    elif isinstance(value, bool):
        if bool in types:
            return
    elif isinstance(value, int | float | str | list | dict):
        if any(kind is not None and isinstance(value, kind) for kind in types):
            return
    else:
        return
    expected = [_JSON_NAMES[kind] for kind in types]
    wanted = expected[0] if len(expected) == 1 else ", ".join(expected[:-1]) + " or " + expected[-1]
    raise DecodeError(where, f"must be {wanted}, not {json_type_name(value)}")


class _Problem(Exception):
    """A bad value deep inside a free-form field; ``path`` is filled in on the way out."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []


def _decode_free(value: Any, depth: int) -> Any:
    """Decode a free-form JSON value (context, options): tagged objects become their type.

    Containers are copied; scalars are not even visited by a call (this runs per message)."""
    if isinstance(value, dict):
        return _decode_object(value, depth)
    if isinstance(value, list):
        return _decode_array(value, depth)
    return value


def _decode_object(value: dict, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise _Problem(f"nested deeper than {MAX_DEPTH} levels")
    if len(value) == 1:
        ((key, raw),) = value.items()
        if key in _TAG_DECODERS and isinstance(raw, str):
            try:
                return _TAG_DECODERS[key](raw)
            except (ValueError, TypeError, ArithmeticError) as error:
                raise _Problem(f"invalid {key} value {raw[:100]!r} ({error})") from error
    decoded = {}
    for key, item in value.items():
        try:
            if isinstance(item, dict):
                item = _decode_object(item, depth + 1)
            elif isinstance(item, list):
                item = _decode_array(item, depth + 1)
        except _Problem as problem:
            problem.path.insert(0, f"[{str(key)[:100]!r}]")
            raise
        decoded[key] = item
    return decoded


def _decode_array(value: list, depth: int) -> list:
    if depth > MAX_DEPTH:
        raise _Problem(f"nested deeper than {MAX_DEPTH} levels")
    items = []
    for index, item in enumerate(value):
        try:
            if isinstance(item, dict):
                item = _decode_object(item, depth + 1)
            elif isinstance(item, list):
                item = _decode_array(item, depth + 1)
        except _Problem as problem:
            problem.path.insert(0, f"[{index}]")
            raise
        items.append(item)
    return items


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
            DecodeError: (a ``ValueError``) If the string is not JSON, not an object, or not
                a valid instance: a missing, unknown or mistyped field, a bad tagged value,
                nesting deeper than :data:`MAX_DEPTH`. The message names the field.
        """
        name = cls.__name__
        if not isinstance(string_value, str | bytes | bytearray):
            raise DecodeError(name, f"expected a JSON string, got {type(string_value).__name__}")
        try:
            data = json.loads(string_value)
        except RecursionError:
            raise DecodeError(name, f"nested deeper than {MAX_DEPTH} levels") from None
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, huge integers
            raise DecodeError(name, f"not valid JSON ({error})") from error
        if not isinstance(data, dict):
            raise DecodeError(name, f"expected a JSON object, got {json_type_name(data)}")
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
        """Build an instance from the dictionary form, decoding each field by its own type.

        Raises:
            DecodeError: (a ``ValueError``) naming the first field that is unknown, missing,
                of the wrong JSON type (:data:`WIRE_TYPES`) or refused by its decoder.
        """
        owner = cls.__name__
        if not isinstance(data, dict):
            raise DecodeError(owner, f"must be an object, not {json_type_name(data)}")
        fields = attrs.fields_dict(cls)
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise DecodeError(owner, f"unknown field(s) {unknown}")
        missing = [
            name
            for name, field in fields.items()
            if field.init and field.default is attrs.NOTHING and name not in data
        ]
        if missing:
            raise DecodeError(owner, f"missing required field(s) {missing}")
        init_kwargs: dict[str, Any] = {}
        after_init: dict[str, Any] = {}
        for name, value in data.items():
            field = fields[name]
            value = _decode_field(f"{owner}.{name}", field, value)
            if field.init:
                init_kwargs[field.alias or name] = value
            else:
                after_init[name] = value
        try:
            instance = cls(**init_kwargs)
            for name, value in after_init.items():
                setattr(instance, name, value)
        except (TypeError, ValueError) as error:  # a validator of the class
            raise DecodeError(owner, str(error)) from error
        return instance


def _decode_field(where: str, field: attrs.Attribute, value: Any) -> Any:
    check_wire_type(where, value, field.metadata.get(WIRE_TYPES))
    decoder = field.metadata.get(DECODER)
    if decoder is None:
        try:
            return _decode_free(value, 1)
        except _Problem as problem:
            path = problem.path if len(problem.path) <= 8 else [*problem.path[:8], "[...]"]
            raise DecodeError(where + "".join(path), problem.problem) from None
    if value is None:
        return None
    try:
        return decoder(value)
    except DecodeError as error:  # a nested object (Message.recipient)
        raise error.inside(where) from error
    except (ValueError, TypeError, ArithmeticError) as error:
        raise DecodeError(where, f"invalid value {str(value)[:100]!r} ({error})") from error


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
