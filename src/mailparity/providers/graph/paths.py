"""Graph URL path segments: ids go into paths escaped, and never as dot segments."""

from __future__ import annotations

from ...urlpath import path_segment

__all__ = ["segment"]


def segment(value: str, what: str = "Graph id") -> str:
    """A path segment: ids keep ``=`` (Graph's own links do too), everything else is escaped.

    Raises BadRequestError for a dot segment or another id that would change the path."""
    return path_segment(value, what, provider="microsoft", safe="=")
