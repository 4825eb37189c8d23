"""HTML to text for ``body.text`` when a message has only HTML.

INTERFACE STUB: being written.
"""

from __future__ import annotations

__all__ = ["html_to_text"]


def html_to_text(html: str) -> str:
    """Text of ``html``: tags removed, entities decoded, ``<script>``/``<style>``/``<head>``
    dropped, block elements and ``<br>`` become line breaks, runs of blank lines collapsed."""
    raise NotImplementedError
