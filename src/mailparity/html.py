"""HTML to text for ``body.text`` when a message has only HTML.

Built on the stdlib :class:`html.parser.HTMLParser`, which tolerates the broken markup that mail
clients produce; the conversion never raises (a last-resort regex strip covers parser failures).
"""

from __future__ import annotations

import html as _html
import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

#: Elements whose content is never text a reader sees.
_DROPPED = frozenset({"script", "style", "head", "title", "template", "noscript", "object"})

#: What may appear inside <head>; any other tag (or visible text) closes an unclosed <head>, as
#: browsers do.
_HEAD_CONTENT = frozenset(
    {"title", "style", "script", "meta", "link", "base", "noscript", "template", "object"}
)

#: Elements that start and end a paragraph (a blank line around them).
_PARAGRAPH = frozenset(
    {
        "p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol",
        "dl", "hr", "figure", "address", "fieldset", "form",
    }
)

#: Elements that start and end a line.
_BLOCK = frozenset(
    {
        "div", "li", "tr", "dt", "dd", "section", "article", "header", "footer", "nav", "main",
        "aside", "center", "caption", "tbody", "thead", "tfoot", "figcaption", "details",
        "summary", "body", "html", "option", "legend",
    }
)

#: Table cells: separated by a tab so columns stay apart on one line.
_CELL = frozenset({"td", "th"})

_WS = re.compile(r"[ \t\r\n\f\v\u00a0]+")
#: The runs of ``_WS`` other than a lone space (which becomes itself): the same result with
#: far fewer replacements, since ordinary text is full of single spaces.
_WS_TO_SPACE = re.compile(r"[\t\r\n\f\v\u00a0][ \t\r\n\f\v\u00a0]*| [ \t\r\n\f\v\u00a0]+")
_BLANK_RUNS = re.compile(r"\n{3,}")
_TAG = re.compile(r"<[^>]*>")
_DROPPED_BLOCK = re.compile(
    r"<(script|style|head|title|template)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL
)


def _needs_collapse(data: str) -> bool:
    """Whether ``data`` holds white space other than lone spaces (substring tests run at C
    speed; ordinary prose then skips the regex)."""
    return (
        "  " in data or "\n" in data or "\t" in data or "\r" in data or "\xa0" in data
        or "\f" in data or "\v" in data
    )


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._tail_newlines = 0
        self._seen_text = False
        self._drop: list[str] = []
        self._pre = 0

    # -- output helpers -------------------------------------------------------------------

    def _emit(self, chunk: str) -> None:
        """Append ``chunk`` to the output, keeping the count :meth:`_trailing_newlines` gives
        up to date (it is asked for at every tag; rescanning the output each time was a large
        part of the conversion)."""
        self.out.append(chunk)
        stripped = chunk.rstrip(" \t")
        if not stripped:
            return
        if stripped.strip("\n"):
            self._tail_newlines = len(stripped) - len(stripped.rstrip("\n"))
            self._seen_text = True
        else:
            self._tail_newlines += len(stripped)

    def _trailing_newlines(self) -> int:
        """Line breaks at the end of the output, white space ignored (2 at the start of the
        document: it behaves as if preceded by a paragraph break)."""
        return self._tail_newlines if self._seen_text else 2

    def _ensure_newlines(self, wanted: int) -> None:
        missing = wanted - self._trailing_newlines()
        if missing > 0:
            self._emit("\n" * missing)

    # -- parser callbacks ------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._drop and self._drop == ["head"] and tag not in _HEAD_CONTENT:
            # An unclosed <head> must not swallow the whole document.
            self._drop = []
        if self._drop:
            if tag in _DROPPED:
                self._drop.append(tag)
            return
        if tag in _DROPPED:
            self._drop.append(tag)
        elif tag == "br":
            self._emit("\n")
        elif tag in _PARAGRAPH:
            self._ensure_newlines(2)
            if tag == "pre":
                self._pre += 1
        elif tag in _BLOCK:
            self._ensure_newlines(1)
        elif tag in _CELL:
            if self.out and not self.out[-1].endswith(("\n", "\t")):
                self._emit("\t")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt and alt.strip():
                self._emit(alt.strip())

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/>, <hr/>, <img/>: the start handling is all they need; a self-closing tag of a
        # dropped element (<script/>) opens nothing.
        if tag in _DROPPED:
            return
        self.handle_starttag(tag, attrs)
        if tag in _PARAGRAPH and tag != "pre":
            self._ensure_newlines(2)

    def handle_endtag(self, tag: str) -> None:
        if self._drop:
            if tag in self._drop:
                # Close up to the matching opener; stray end tags of other dropped kinds are
                # ignored so a missing </style> does not hide the rest forever.
                while self._drop:
                    if self._drop.pop() == tag:
                        break
            return
        if tag in _PARAGRAPH:
            if tag == "pre" and self._pre:
                self._pre -= 1
            self._ensure_newlines(2)
        elif tag in _BLOCK:
            self._ensure_newlines(1)

    def handle_data(self, data: str) -> None:
        if self._drop and self._drop == ["head"] and data.strip():
            self._drop = []
        if self._drop or not data:
            return
        if self._pre:
            self._emit(data.replace("\r\n", "\n").replace("\u00a0", " "))
            return
        text = _WS_TO_SPACE.sub(" ", data) if _needs_collapse(data) else data
        if self._trailing_newlines() or (self.out and self.out[-1].endswith((" ", "\t"))):
            text = text.lstrip(" ")
        if text:
            self._emit(text)


def _finish(text: str) -> str:
    lines = [line.rstrip(" \t") for line in text.replace("\r\n", "\n").split("\n")]
    joined = "\n".join(line if line.strip() else "" for line in lines)
    return _BLANK_RUNS.sub("\n\n", joined).strip("\n ")


def _fallback(html: str) -> str:
    text = _DROPPED_BLOCK.sub(" ", html)
    text = re.sub(r"<br\s*/?>|</?(p|div|li|tr|h[1-6])\b[^>]*>", "\n", text, flags=re.I)
    text = _html.unescape(_TAG.sub(" ", text))
    lines = [_WS.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


#: A start tag the fast path may read itself: a name, attributes (quoted values may hold ``>``),
#: an optional ``/``. Group 1: the name; group 2: ``/`` when self-closing.
_SIMPLE_START = re.compile(
    r"<([a-zA-Z][a-zA-Z0-9]*)"
    r"(?:[ \t\n\r\f]+[a-zA-Z_:][-a-zA-Z0-9_:.]*"
    r"(?:[ \t\n\r\f]*=[ \t\n\r\f]*(?:\"[^\"<]*\"|'[^'<]*'|[-a-zA-Z0-9_.:#%+,;]+))?)*"
    r"[ \t\n\r\f]*(/?)>"
)
_SIMPLE_END = re.compile(r"</([a-zA-Z][a-zA-Z0-9]*)[ \t\n\r\f]*>")
#: Markup the fast path leaves to the full parser: comments, declarations, processing
#: instructions, raw-text elements and the tags whose attributes matter (``<img alt>``).
_NOT_SIMPLE = re.compile(
    r"<[!?]|<\s*/?\s*(?:script|style|head|title|template|noscript|object|img|textarea|xmp|"
    r"iframe|noembed|noframes|plaintext)\b",
    re.IGNORECASE,
)


def _fast_extract(html: str) -> str | None:
    """The extractor's output for markup made only of plain start / end tags and text, fed to
    the extractor's handlers exactly as :class:`HTMLParser` would (one ``handle_data`` per run
    of text, entities decoded, names lower-cased); None when the markup holds anything else,
    which the full parser then reads. Most mail bodies qualify, at a fraction of the cost."""
    if _NOT_SIMPLE.search(html) is not None:
        return None
    extractor = _TextExtractor()
    start = 0
    end = len(html)
    while start < end:
        lt = html.find("<", start)
        if lt < 0:
            lt = end
        if lt > start:
            text = html[start:lt]
            extractor.handle_data(_html.unescape(text) if "&" in text else text)
        if lt >= end:
            break
        if html.startswith("</", lt):
            match = _SIMPLE_END.match(html, lt)
            if match is None:
                return None
            extractor.handle_endtag(match.group(1).lower())
        else:
            match = _SIMPLE_START.match(html, lt)
            if match is None:
                return None
            tag = match.group(1).lower()
            if match.group(2):
                extractor.handle_startendtag(tag, [])
            else:
                extractor.handle_starttag(tag, [])
        start = match.end()
    return "".join(extractor.out)


def html_to_text(html: str) -> str:
    """Text of ``html``: tags removed, entities decoded, ``<script>``/``<style>``/``<head>``
    dropped, block elements and ``<br>`` become line breaks, runs of blank lines collapsed."""
    if not html:
        return ""
    fast = _fast_extract(html)
    if fast is not None:
        return _finish(fast)
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # hostile markup must still give text, never an error
        return _fallback(html)
    return _finish("".join(parser.out))
