"""A missing optional dependency raises an error that names the extra to install."""

from __future__ import annotations

import importlib
import sys

import pytest

from mailparity.errors import MissingExtraError


@pytest.mark.parametrize(
    ("module", "dependency", "extra"),
    [
        ("mailparity.contrib.flask", "flask", "flask"),
        ("mailparity.contrib.fastapi", "fastapi", "fastapi"),
        ("mailparity.contrib.django", "django.http", "django"),
        ("mailparity.stores.sql", "sqlalchemy", "sql"),
    ],
)
def test_a_missing_extra_is_named(
    monkeypatch: pytest.MonkeyPatch, module: str, dependency: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, dependency, None)  # makes `import dependency` fail
    monkeypatch.delitem(sys.modules, module, raising=False)
    # mailparity is not on the package index yet: the message says how to install from a
    # checkout or a built wheel.
    hint = (rf"the '{extra}' extra: install mailparity\[{extra}\]"
            rf" \(in a checkout: pip install '\.\[{extra}\]'")
    with pytest.raises(MissingExtraError, match=hint) as info:
        importlib.import_module(module)
    assert isinstance(info.value, ImportError)
    assert isinstance(info.value.__cause__, ImportError)
