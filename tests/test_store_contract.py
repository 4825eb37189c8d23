"""The store contract (``mailparity.testing.store_contract``) run against every shipped store
(``store_factories.STORE_FACTORIES``), plus the former cursor method the shipped stores keep."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailparity.testing.store_contract import StoreContract, gmail_config, graph_config
from store_factories import STORE_FACTORIES


class TestShippedStores(StoreContract):
    @pytest.fixture(params=STORE_FACTORIES, ids=[name for name, _ in STORE_FACTORIES])
    def store(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
        _, factory = request.param
        instance = factory(tmp_path)
        yield instance
        close = getattr(instance, "close", None)
        if callable(close):
            close()

    def test_compare_and_set_history_id(self, store: Any) -> None:
        store.save_provider(gmail_config())
        assert store.compare_and_set_history_id("g-1", 5, 10) is False
        assert store.compare_and_set_history_id("g-1", None, 100) is True
        assert store.get_provider("g-1").history_id == 100
        assert store.compare_and_set_history_id("g-1", None, 200) is False
        assert store.compare_and_set_history_id("g-1", 100, 150) is True
        assert store.get_provider("g-1").history_id == 150
        assert store.compare_and_set_history_id("missing", None, 1) is False
        # The rest of the config is untouched by the cursor move.
        assert store.get_provider("g-1").client_secret.get_secret_value() == "g-client-secret"


    def test_compare_and_set_history_id_refuses_microsoft(self, store: Any) -> None:
        store.save_provider(graph_config())
        with pytest.raises(ValueError, match="not a Gmail provider"):
            store.compare_and_set_history_id("ms-1", None, 1)
