"""A delegated connection to a shared mailbox, configured in the provider config."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import responses

import mailparity as mp
from mailparity.maintenance import Maintenance

GRAPH = "https://graph.microsoft.com/v1.0"


def _setup(shared: bool) -> tuple[mp.InMemoryStore, mp.MicrosoftProviderConfig]:
    store = mp.InMemoryStore()
    config = mp.MicrosoftProviderConfig(
        provider_id="p1",
        tenant="t1",
        mailbox="shared@contoso.test",
        client_id="cid",
        shared_mailbox=shared,
        webhook_notification_url="https://example.test/hook",
    )
    store.save_provider(config)
    store.save_tokens(
        "p1",
        mp.OAuthTokens(
            access_token="at",
            refresh_token="rt",
            expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
        ),
    )
    return store, config


@responses.activate
def test_config_flag_reads_the_shared_mailbox_through_users_path() -> None:
    store, config = _setup(shared=True)
    responses.get(
        f"{GRAPH}/users/shared@contoso.test/mailFolders/inbox/messages",
        json={"value": []},
    )
    responses.get(
        f"{GRAPH}/users/shared@contoso.test",
        json={"mail": "shared@contoso.test", "userPrincipalName": "shared@contoso.test"},
    )
    responses.get(f"{GRAPH}/me", json={"mail": "agent@contoso.test"})
    adapter = mp.MicrosoftGraphAdapter(config, store=store)
    assert adapter.shared_mailbox is True
    result = adapter.test_connection()
    assert result.success, result.error
    paths = [call.request.url.split("?", 1)[0] for call in responses.calls]
    # The signed-in user is looked up, but the mailbox is read through /users/{mailbox}.
    assert f"{GRAPH}/users/shared@contoso.test/mailFolders/inbox/messages" in paths
    assert all(
        p.startswith(f"{GRAPH}/users/shared@contoso.test") or p == f"{GRAPH}/me" for p in paths
    )


def test_constructor_argument_still_overrides_the_config() -> None:
    store, config = _setup(shared=True)
    assert (
        mp.MicrosoftGraphAdapter(config, store=store, shared_mailbox=False).shared_mailbox is False
    )
    store2, config2 = _setup(shared=False)
    assert mp.MicrosoftGraphAdapter(config2, store=store2).shared_mailbox is False


def test_renewal_sweep_leaves_delegated_shared_mailboxes_to_the_catch_up_sync() -> None:
    store, config = _setup(shared=True)
    maintenance = Maintenance(store, mp.InMemoryPublisher())
    assert maintenance.needs_renewal(config) is False
    assert maintenance.needs_renewal(config.model_copy(update={"shared_mailbox": False})) is True
