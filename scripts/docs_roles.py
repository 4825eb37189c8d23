"""Sphinx-style roles in docstrings (``:class:`~mailparity.x.Y```) rendered as cross-references.

The docstrings are written for ``help()`` and the source, with Sphinx roles; MkDocs does not know
roles and would print them raw. This griffe extension (mkdocstrings-python's ``extensions``
option in ``mkdocs.yml``) rewrites each role into an optional cross-reference: a link when the
target is rendered on a reference page, the name in code otherwise, never a broken link. ``~``
shows the last part of the path only, as in Sphinx. A target that is not a full dotted path is
looked up from the object outwards (its class, its module, the package), as Sphinx does.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|data|exc|obj|const):`(~?)([^`<>]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            docstring = obj.docstring
            if docstring is not None and ":" in docstring.value:
                docstring.value = _ROLE.sub(
                    lambda match, obj=obj: _reference(match, obj, loader), docstring.value
                )


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found.extend(_walk(member))  # type: ignore[arg-type]
    return found


def _reference(match: re.Match[str], obj: griffe.Object, loader: griffe.GriffeLoader) -> str:
    short, written = match.group(1) == "~", match.group(2).strip()
    target = written.removesuffix("()")
    title = target.rsplit(".", 1)[-1] if short else target
    shown = f"<code>{html.escape(title)}{'()' if written.endswith('()') else ''}</code>"
    path = _resolve(target, obj, loader)
    if path is None:
        return shown
    return f'<autoref identifier="{html.escape(path)}" optional>{shown}</autoref>'


def _resolve(target: str, obj: griffe.Object, loader: griffe.GriffeLoader) -> str | None:
    prefixes = [""]
    scope: griffe.Object | None = obj
    while scope is not None:
        prefixes.append(scope.path + ".")
        scope = scope.parent
    for prefix in prefixes:
        try:
            found = loader.modules_collection.get_member(prefix + target)
        except Exception:  # noqa: S112 - not in this scope: try the next one out
            continue
        try:
            return str(found.final_target.path if found.is_alias else found.path)
        except Exception:  # an alias that does not resolve: its own path
            return str(found.path)
    return None
