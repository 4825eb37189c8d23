"""Events on the wire: their JSON Schema and :func:`parse_event`, the way back from JSON.

Every event the library publishes is one of the classes of :data:`EVENT_TYPES`, keyed by its
``eventType``. Its JSON (``model_dump(mode="json", by_alias=True)``, what every shipped publisher
sends) is described by a JSON Schema (draft 2020-12) generated from the models and shipped with
the package (``mailparity/schemas/events.schema.json``): a consumer in any language can validate
what it receives, and a consumer in Python gets the typed event back with :func:`parse_event`.

The schema describes the published form: every key is always present (``null`` when empty), and
``schemaVersion`` is :data:`~mailparity.models.EVENT_SCHEMA_VERSION`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, get_args

from pydantic import Field, TypeAdapter, ValidationError

from .errors import EventParseError
from .models import EVENT_SCHEMA_VERSION, MailParityEvent

__all__ = [
    "EVENT_SCHEMA_FILE",
    "EVENT_SCHEMA_VERSION",
    "EVENT_TYPES",
    "event_json_schema",
    "load_event_schema",
    "parse_event",
    "render_event_schema",
    "write_event_schema",
]

#: Where the shipped schema lives inside the package.
EVENT_SCHEMA_FILE = "schemas/events.schema.json"


def _event_classes() -> dict[str, type[MailParityEvent]]:
    """``{eventType: class}`` for every member of the :data:`MailParityEvent` union, so an event
    class added to the union is parsed and in the schema without a second list to keep."""
    classes: dict[str, type[MailParityEvent]] = {}
    for cls in get_args(MailParityEvent):
        event_type = cls.model_fields["event_type"].default
        classes[event_type] = cls
    return classes


#: Every event type the library publishes, and its class.
EVENT_TYPES: Mapping[str, type[MailParityEvent]] = _event_classes()

_SCHEMA_HEADER: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "MailParityEvent",
    "description": (
        "An event published by mailparity, as JSON (camelCase keys). eventType says which one: "
        + ", ".join(sorted(EVENT_TYPES))
        + ". Generated from the library's models; do not edit by hand."
    ),
}


@lru_cache(maxsize=1)
def _adapter() -> TypeAdapter[MailParityEvent]:
    return TypeAdapter(Annotated[MailParityEvent, Field(discriminator="event_type")])


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of every event, generated from the models now (what the shipped file
    must equal; :func:`load_event_schema` reads the shipped file)."""
    generated = _adapter().json_schema(by_alias=True, mode="serialization")
    return {**_SCHEMA_HEADER, **generated}


def render_event_schema() -> str:
    """:func:`event_json_schema` as the text of the shipped file (stable: 2-space indent, final
    newline), so a test can compare it byte for byte."""
    return json.dumps(event_json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_event_schema(path: str | Path | None = None) -> Path:
    """Write :func:`render_event_schema` to ``path`` (default: the package's own file, which is
    what ``make schema`` does after a model changed). Returns the path written."""
    target = Path(path) if path is not None else Path(__file__).parent / EVENT_SCHEMA_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_event_schema(), encoding="utf-8")
    return target


def load_event_schema() -> dict[str, Any]:
    """The JSON Schema shipped with the package (a dict, e.g. for ``jsonschema.validate``)."""
    text = resources.files("mailparity").joinpath(EVENT_SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def parse_event(data: bytes | str | Mapping[str, Any]) -> MailParityEvent:
    """The typed event of ``data``: JSON text (``bytes`` as UTF-8 or ``str``) or a mapping such
    as ``event_to_json`` gives. Keys may be camelCase (the wire form) or snake_case.

    The class is chosen by ``eventType``; an event without ``schemaVersion`` (published before
    the key existed) is version 1. Raises :class:`~mailparity.errors.EventParseError` (also a
    ``ValueError``) when ``data`` is not JSON, not an object, has no or an unknown ``eventType``,
    a ``schemaVersion`` newer than this library, or fields that do not validate; the message
    names the failing fields, never their values (events carry mail content).
    """
    value = _load(data)
    event_type = value.get("eventType", value.get("event_type"))
    if event_type is None:
        raise EventParseError("not an event: no eventType")
    cls = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if cls is None:
        shown = event_type[:80] if isinstance(event_type, str) else type(event_type).__name__
        raise EventParseError(
            f"unknown eventType {shown!r}; this library knows {', '.join(sorted(EVENT_TYPES))}"
        )
    _check_version(value.get("schemaVersion", value.get("schema_version", 1)))
    try:
        return cls.model_validate(dict(value))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(event)'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False, include_context=False)
        )
        raise EventParseError(f"invalid {event_type} event: {problems}") from None


def _load(data: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventParseError(
                f"an event is UTF-8 JSON; byte {exc.start} is not UTF-8"
            ) from None
    if not isinstance(data, str):
        raise EventParseError(
            f"parse_event takes bytes, str or a mapping, not {type(data).__name__}"
        )
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise EventParseError(
            f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        raise EventParseError(f"an event is a JSON object, not {type(value).__name__}")
    return value


def _check_version(version: object) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise EventParseError("schemaVersion must be a positive integer")
    if version > EVENT_SCHEMA_VERSION:
        raise EventParseError(
            f"event schemaVersion {version} is newer than this library's"
            f" {EVENT_SCHEMA_VERSION}: upgrade mailparity to read it"
        )
