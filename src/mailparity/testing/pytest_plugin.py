"""pytest plugin of mailparity (registered through the ``pytest11`` entry point).

Fixtures for a host's tests of "an email arrives -> my code runs", with no provider reached::

    def test_ticket_created(fake_graph, microsoft_mailbox, mailparity_handler,
                            mailparity_publisher):
        message_id = fake_graph.deliver(microsoft_mailbox.mailbox, build_message(...))
        mailparity_handler.handle_microsoft(graph_notification_request(fake_graph, message_id))
        mailparity_handler.run_pending()
        [event] = mailparity_publisher.events

* ``mailparity_store``: an :class:`~mailparity.stores.memory.InMemoryStore`;
* ``mailparity_publisher``: an :class:`~mailparity.publishers.InMemoryPublisher`;
* ``mailparity_responses``: the ``responses`` mock active for the test, with the fakes registered
  on it (add the test's own routes to it; unmatched requests fail as usual);
* ``fake_graph`` / ``fake_gmail``: a :class:`~mailparity.testing.FakeGraph` /
  :class:`~mailparity.testing.FakeGmail` answering on that mock;
* ``microsoft_mailbox`` / ``google_mailbox``: a connected provider config (tokens stored,
  subscription or watch registered through the real adapter) on those fakes;
* ``mailparity_handler``: a :class:`~mailparity.webhooks.WebhookHandler` on the store and
  publisher, verifying Pub/Sub tokens against the fake's signer
  (:data:`~mailparity.testing.TEST_AUDIENCE`, :data:`~mailparity.testing.PUSH_SERVICE_ACCOUNT`),
  whose retries never sleep.

Importing this module must stay cheap and must never fail, because pytest loads it in every
project that has mailparity installed: everything is imported inside the fixtures, and a fixture
that needs ``responses`` (or ``cryptography``) fails with a clear message when it is missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import responses

    from ..models import ProviderConfigBase
    from ..publishers import InMemoryPublisher
    from ..stores.memory import InMemoryStore
    from ..webhooks import WebhookHandler
    from .fake_gmail import FakeGmail
    from .fake_graph import FakeGraph

_NEEDS = {
    "responses": "pip install responses (or install mailparity with its 'testing' extra)",
    "cryptography": "pip install cryptography (or install mailparity with its 'testing' extra)",
}


def _require(module: str, fixture: str) -> Any:
    """Import ``module`` or fail the test with one clear line (no traceback)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(
            f"the mailparity fixture {fixture!r} needs the {module!r} package: {_NEEDS[module]}",
            pytrace=False,
        )


def _no_sleep(seconds: float) -> None:
    """Retries in tests do not wait (the fakes answer at once)."""


@pytest.fixture
def mailparity_store() -> InMemoryStore:
    """An empty :class:`~mailparity.stores.memory.InMemoryStore`."""
    from ..stores.memory import InMemoryStore

    return InMemoryStore()


@pytest.fixture
def mailparity_publisher() -> InMemoryPublisher:
    """An :class:`~mailparity.publishers.InMemoryPublisher`: ``.events`` lists what went out."""
    from ..publishers import InMemoryPublisher

    return InMemoryPublisher()


@pytest.fixture
def mailparity_responses() -> Iterator[responses.RequestsMock]:
    """The ``responses`` mock active for the test; the fakes register on it."""
    responses_lib = _require("responses", "mailparity_responses")
    with responses_lib.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def fake_graph(mailparity_responses: responses.RequestsMock) -> FakeGraph:
    """A :class:`~mailparity.testing.FakeGraph` answering Graph and Entra on the mock."""
    from .fake_graph import FakeGraph

    fake = FakeGraph()
    fake.register(mailparity_responses)
    return fake


@pytest.fixture
def fake_gmail(mailparity_responses: responses.RequestsMock) -> FakeGmail:
    """A :class:`~mailparity.testing.FakeGmail` answering Gmail, Google's token endpoint and the
    push signer's certificates on the mock."""
    _require("cryptography", "fake_gmail")
    from .fake_gmail import FakeGmail

    fake = FakeGmail()
    fake.register(mailparity_responses)
    return fake


@pytest.fixture
def microsoft_mailbox(
    mailparity_store: InMemoryStore, fake_graph: FakeGraph
) -> ProviderConfigBase:
    """``support@contoso.test`` connected on ``fake_graph``, its subscription registered."""
    from .connect import connect_microsoft

    return connect_microsoft(mailparity_store, fake_graph)


@pytest.fixture
def google_mailbox(mailparity_store: InMemoryStore, fake_gmail: FakeGmail) -> ProviderConfigBase:
    """``help@example.test`` connected on ``fake_gmail``, its watch registered."""
    from .connect import connect_google

    return connect_google(mailparity_store, fake_gmail)


@pytest.fixture
def mailparity_handler(
    mailparity_store: InMemoryStore,
    mailparity_publisher: InMemoryPublisher,
    fake_gmail: FakeGmail,
) -> WebhookHandler:
    """A :class:`~mailparity.webhooks.WebhookHandler` on the store and publisher; Pub/Sub tokens
    are verified against ``fake_gmail``'s signer."""
    from ..webhooks import WebhookHandler

    return WebhookHandler(
        store=mailparity_store,
        publisher=mailparity_publisher,
        sleep=_no_sleep,
        **_handler_options(fake_gmail),
    )


def _handler_options(*fakes: Any) -> dict[str, Any]:
    """The ``WebhookHandler`` options the providers' testing kits give for these fakes (for
    one: the Pub/Sub audience, service account and certificates of the fake's signer)."""
    from ..providers import specs

    options: dict[str, Any] = {}
    for spec in specs():
        kit = spec.testing_kit()
        if kit is None or kit.handler_options is None or kit.fake is None:
            continue
        fake_class = kit.fake_class()
        for fake in fakes:
            if isinstance(fake, fake_class):
                options.update(kit.handler_options(fake))
    return options
