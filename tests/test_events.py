"""The events' JSON Schema (shipped, current, true of real events), parse_event, schemaVersion."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import mailparity as mp
from conftest import corpus_files, require_corpus
from mailparity.events import (
    EVENT_SCHEMA_FILE,
    EVENT_TYPES,
    load_event_schema,
    parse_event,
    render_event_schema,
)
from mailparity.mime import message_from_mime
from mailparity.models import EVENT_SCHEMA_VERSION
from mailparity.publishers import event_to_json
from mailparity.testing import build_message, gmail_push_request, graph_notification_request

SHIPPED = Path(mp.__file__).parent / EVENT_SCHEMA_FILE

RAW = build_message(
    from_=("Zoë Ångström", "zoe@customer.example"),
    to=["support@contoso.test", "help@example.test"],
    subject="Drucker druckt nicht",
    text="Seit heute früh nur leere Seiten.",
    html="<p>Seit heute <b>früh</b></p>",
    attachments=[("log.txt", b"E-204\n")],
)


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    """A validator of the shipped schema (itself checked against its metaschema)."""
    schema = load_event_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.fixture
def both_providers(fake_graph, microsoft_mailbox, fake_gmail, google_mailbox):
    """Both fakes, each with its connected mailbox."""
    return fake_graph, microsoft_mailbox, fake_gmail, google_mailbox


def _message(**changes: Any) -> mp.EmailMessage:
    fields: dict[str, Any] = {
        "id": "m1", "provider": "microsoft", "provider_id": "p1", "tenant": "t1",
        "mailbox": "desk@example.test", "received_at": datetime(2026, 1, 2, tzinfo=timezone.utc),
        "subject": "Hello",
    }
    return mp.EmailMessage(**{**fields, **changes})


def _auth_failed() -> mp.EmailProviderAuthFailed:
    return mp.EmailProviderAuthFailed(
        event_id="e2", tenant_id="t1", provider_id="p1", provider="google",
        mailbox="desk@example.test", error_code="invalid_grant", error="consent again",
    )


# --------------------------------------------------------------------------- the shipped file


def test_the_shipped_schema_is_what_the_models_generate_now():
    assert SHIPPED.is_file(), "the event schema is not shipped in the package"
    assert SHIPPED.read_text(encoding="utf-8") == render_event_schema(), (
        "the shipped event schema is out of date: run `make schema` and commit it"
    )


def test_the_schema_covers_every_event_class_by_its_event_type():
    schema = load_event_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    mapping = schema["discriminator"]["mapping"]
    assert set(mapping) == set(EVENT_TYPES) == {
        "INBOUND_EMAIL_RECEIVED", "EMAIL_PROVIDER_AUTH_FAILED", "EMAIL_PROVIDER_CONNECTED",
        "EMAIL_PROVIDER_REAUTHORIZED", "EMAIL_PROVIDER_SUBSCRIPTION_LOST",
    }
    for event_type, cls in EVENT_TYPES.items():
        definition = schema["$defs"][cls.__name__]
        assert mapping[event_type] == f"#/$defs/{cls.__name__}"
        assert definition["properties"]["eventType"]["const"] == event_type
        # every key of the wire form is described and always present
        keys = set(cls.model_json_schema(by_alias=True, mode="serialization")["properties"])
        assert set(definition["properties"]) == keys
        assert set(definition["required"]) == keys
        assert {"eventId", "eventType", "schemaVersion", "occurredAt", "tenantId",
                "providerId"} <= keys


def test_the_schema_file_is_package_data():
    """Read through importlib.resources, as an installed package reads it (hatch ships every
    file under the package folder)."""
    from importlib import resources

    assert resources.files("mailparity").joinpath(EVENT_SCHEMA_FILE).is_file()


# --------------------------------------------------------------------------- real events


def test_events_of_the_pipeline_validate_on_both_providers(
    both_providers, mailparity_handler, mailparity_publisher, validator,
):
    fake_graph, microsoft_mailbox, fake_gmail, google_mailbox = both_providers
    message_id = fake_graph.deliver(microsoft_mailbox.mailbox, RAW)
    assert mailparity_handler.handle_microsoft(
        graph_notification_request(fake_graph, message_id)).status == 202
    fake_gmail.deliver(google_mailbox.mailbox, RAW)
    assert mailparity_handler.handle_google(
        gmail_push_request(fake_gmail, google_mailbox.mailbox)).status == 204
    mailparity_handler.run_pending()

    events = mailparity_publisher.events
    assert sorted(e.email_data.provider for e in events  # type: ignore[union-attr]
                  ) == ["google", "microsoft"]
    for event in events:
        wire = event_to_json(event)
        validator.validate(wire)
        assert wire["schemaVersion"] == EVENT_SCHEMA_VERSION
        assert parse_event(json.dumps(wire)) == event


def test_auth_failure_events_of_the_pipeline_validate(
    fake_graph, microsoft_mailbox, mailparity_handler, mailparity_publisher, validator,
):
    message_id = fake_graph.deliver(microsoft_mailbox.mailbox, RAW)
    fake_graph.expire_tokens()
    fake_graph.revoke_refresh_token()  # the 401 leads to a refresh, which gets invalid_grant
    mailparity_handler.handle_microsoft(graph_notification_request(fake_graph, message_id))
    mailparity_handler.run_pending()

    failures = mailparity_publisher.events_of_type("EMAIL_PROVIDER_AUTH_FAILED")
    assert failures, "the revoked grant published no auth-failure event"
    for event in failures:
        wire = event_to_json(event)
        validator.validate(wire)
        assert wire["schemaVersion"] == EVENT_SCHEMA_VERSION
        assert parse_event(wire) == event


@pytest.mark.parametrize("name", corpus_files("mime"))
def test_events_of_the_real_mail_corpus_validate(name, validator):
    raw = (require_corpus() / "mime" / name).read_bytes()
    message = message_from_mime(
        raw, id="m-" + name, provider="google", provider_id="p1", tenant="t1",
        mailbox="desk@example.test", received_at=datetime(2026, 1, 2, tzinfo=timezone.utc),
    )
    event = mp.InboundEmailReceived.for_message(message)
    wire = event_to_json(event)
    validator.validate(wire)
    assert parse_event(json.dumps(wire, ensure_ascii=False).encode("utf-8")) == event


def test_a_changed_event_fails_the_schema(validator):
    wire = event_to_json(mp.InboundEmailReceived.for_message(_message()))
    for broken in (
        {**wire, "eventType": "SOMETHING_ELSE"},
        {key: value for key, value in wire.items() if key != "tenantId"},
        {**wire, "emailData": {**wire["emailData"], "to": "not a list"}},
        {**wire, "schemaVersion": "1"},
        {**wire, "emailData": {**wire["emailData"], "from": {"name": None}}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(broken)


# --------------------------------------------------------------------------- schemaVersion


def test_schema_version_is_added_and_every_existing_key_is_kept():
    wire = event_to_json(mp.InboundEmailReceived.for_message(_message()))
    assert set(wire) == {"eventId", "eventType", "schemaVersion", "occurredAt", "tenantId",
                         "providerId", "emailData"}
    assert wire["schemaVersion"] == EVENT_SCHEMA_VERSION == 1
    assert wire["eventType"] == "INBOUND_EMAIL_RECEIVED"
    auth = event_to_json(_auth_failed())
    assert auth["schemaVersion"] == 1
    assert {"provider", "mailbox", "errorCode", "error"} <= set(auth)


# --------------------------------------------------------------------------- parse_event


def test_parse_event_gives_the_typed_event_from_bytes_str_and_mappings():
    event = mp.InboundEmailReceived.for_message(_message())
    wire = event_to_json(event)
    text = json.dumps(wire)
    for data in (text, text.encode("utf-8"), wire, event.model_dump()):
        parsed = parse_event(data)
        assert isinstance(parsed, mp.InboundEmailReceived)
        assert parsed == event
    failed = _auth_failed()
    auth = parse_event(json.dumps(event_to_json(failed)))
    assert isinstance(auth, mp.EmailProviderAuthFailed)
    assert auth == failed


def test_parse_event_reads_events_published_before_schema_version():
    wire = event_to_json(mp.InboundEmailReceived.for_message(_message()))
    del wire["schemaVersion"]
    assert parse_event(wire).schema_version == 1


def test_parse_event_is_exported_at_the_top():
    assert mp.parse_event is parse_event
    assert issubclass(mp.EventParseError, mp.MailParityError)
    assert issubclass(mp.EventParseError, ValueError)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe{}", "byte 0 is not UTF-8"),
        ("{not json", "not JSON: Expecting property name enclosed in double quotes at line 1"),
        ("[1, 2]", "an event is a JSON object, not list"),
        ('"INBOUND_EMAIL_RECEIVED"', "an event is a JSON object, not str"),
        ({"eventId": "e1"}, "not an event: no eventType"),
        ({"eventType": "TICKET_CREATED"}, "unknown eventType 'TICKET_CREATED'; this library knows"
                                          " EMAIL_PROVIDER_AUTH_FAILED, EMAIL_PROVIDER_CONNECTED,"
                                          " EMAIL_PROVIDER_REAUTHORIZED,"
                                          " EMAIL_PROVIDER_SUBSCRIPTION_LOST,"
                                          " INBOUND_EMAIL_RECEIVED"),
        ({"eventType": 7}, "unknown eventType 'int'"),
        (42, "parse_event takes bytes, str or a mapping, not int"),
    ],
)
def test_parse_event_refuses_what_is_not_an_event(data, message):
    with pytest.raises(mp.EventParseError) as caught:
        parse_event(data)
    assert message in str(caught.value)


def test_parse_event_names_the_bad_fields_without_their_values():
    wire = event_to_json(mp.InboundEmailReceived.for_message(_message(subject="secret-ish text")))
    del wire["tenantId"]
    wire["emailData"]["receivedAt"] = "secret-ish text"
    with pytest.raises(mp.EventParseError) as caught:
        parse_event(wire)
    text = str(caught.value)
    assert text.startswith("invalid INBOUND_EMAIL_RECEIVED event: ")
    assert "tenantId: Field required" in text
    assert "emailData.receivedAt: Input should be a valid datetime" in text
    assert "secret-ish" not in text


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (2, "event schemaVersion 2 is newer than this library's 1: upgrade mailparity"),
        (0, "schemaVersion must be a positive integer"),
        ("1", "schemaVersion must be a positive integer"),
        (True, "schemaVersion must be a positive integer"),
    ],
)
def test_parse_event_refuses_an_unknown_schema_version(version, message):
    wire = event_to_json(mp.InboundEmailReceived.for_message(_message()))
    wire["schemaVersion"] = version
    with pytest.raises(mp.EventParseError, match=message):
        parse_event(wire)

