"""One test_connection rule for every provider: the mailbox check and the error report live on
the adapter base."""

from __future__ import annotations

import pytest

from fake_adapter import FakeAdapter, FakeMailbox
from mailparity.errors import ThrottledError
from mailparity.models import GmailProviderConfig, MicrosoftProviderConfig
from mailparity.stores.memory import InMemoryStore


@pytest.fixture(params=["microsoft", "google"])
def adapter(request: pytest.FixtureRequest) -> FakeAdapter:
    model = MicrosoftProviderConfig if request.param == "microsoft" else GmailProviderConfig
    config = model(provider_id="p", tenant="t", mailbox="Support@Contoso.com")
    return FakeAdapter(config, mailbox=FakeMailbox(config), store=InMemoryStore())


def test_the_configured_mailbox_matches_case_and_space_insensitively(adapter: FakeAdapter) -> None:
    assert adapter.mailbox_mismatch(["other@contoso.com", " support@CONTOSO.com "]) is None


def test_a_mismatch_names_both_and_reports_the_observed_mailbox(adapter: FakeAdapter) -> None:
    result = adapter.mailbox_mismatch(["someone@else.com"])
    assert result is not None
    assert not result.success
    assert result.code == "mailbox_mismatch"
    assert result.mailbox == "someone@else.com"
    assert result.error is not None
    assert "someone@else.com" in result.error
    assert "Support@Contoso.com" in result.error
    unknown = adapter.mailbox_mismatch([])
    assert unknown is not None
    assert unknown.mailbox is None


def test_failures_are_reported_without_foreign_details(adapter: FakeAdapter) -> None:
    throttled = adapter.connection_failed(
        ThrottledError("slow down", status=429, code="TooMany", request_id="rid-1")
    )
    assert (throttled.success, throttled.status, throttled.code, throttled.request_id) == (
        False, 429, "TooMany", "rid-1")
    foreign = adapter.connection_failed(RuntimeError("token=secret-value"), mailbox="m")
    assert foreign.error == "unexpected error: RuntimeError"
    assert foreign.mailbox == "m"
