"""html_to_text: the body.text of HTML-only messages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailparity.html import html_to_text


def test_tags_removed_and_entities_decoded() -> None:
    assert html_to_text("<b>Fish</b> &amp; <i>chips</i> &lt;3 &#233;&#x41;") == "Fish & chips <3 éA"


def test_nbsp_becomes_a_space() -> None:
    assert html_to_text("a&nbsp;b") == "a b"


def test_script_style_head_title_dropped() -> None:
    html = (
        "<html><head><title>Secret title</title><style>p {color: red}</style>"
        "<script>var x = '<p>no</p>';</script></head>"
        "<body><p>Visible</p><script type='text/javascript'>alert(1)</script></body></html>"
    )
    assert html_to_text(html) == "Visible"


def test_block_elements_and_br_become_line_breaks() -> None:
    html = "<div>one</div><div>two<br>three<br/><br>four</div><p>para</p><h1>Title</h1>end"
    assert html_to_text(html) == "one\ntwo\nthree\n\nfour\n\npara\n\nTitle\n\nend"


def test_lists_and_tables() -> None:
    html = (
        "<ul><li>first</li><li>second</li></ul>"
        "<table><tr><td>A</td><td>B</td></tr><tr><th>C</th><td>D</td></tr></table>"
    )
    assert html_to_text(html) == "first\nsecond\n\nA\tB\nC\tD"


def test_whitespace_collapsed_and_blank_runs_limited() -> None:
    html = "<p>  lots   of\n\n  space </p><br><br><br><br><br><p>after</p>"
    assert html_to_text(html) == "lots of space\n\nafter"


def test_pre_keeps_line_breaks() -> None:
    assert html_to_text("<pre>line 1\n    indented</pre>") == "line 1\n    indented"


def test_unclosed_head_does_not_swallow_the_body() -> None:
    assert html_to_text("<head><meta charset='utf-8'><p>Body text") == "Body text"
    assert html_to_text("<html><head><title>t</title>Hello there") == "Hello there"


def test_unclosed_style_hides_only_its_content() -> None:
    # Browsers hide everything after an unclosed <style>; we do the same, without raising.
    assert html_to_text("<p>before</p><style>p{}") == "before"


def test_img_alt_text_kept() -> None:
    assert html_to_text('<p>Logo: <img src="cid:logo" alt="ACME"></p>') == "Logo: ACME"


def test_comments_and_doctype_dropped() -> None:
    assert html_to_text("<!DOCTYPE html><!-- hidden -->shown<!--[if mso]>x<![endif]-->") == "shown"


@pytest.mark.parametrize("value", ["", "   ", "<p></p>", "<br><br>", "<script>x</script>"])
def test_empty_documents(value: str) -> None:
    assert html_to_text(value) == ""


@pytest.mark.parametrize(
    "hostile",
    [
        "<",
        "<<<>>>",
        "<a href='x",
        "</p></div></td>",
        "<p <p <p>text",
        "&#xFFFFFFFF; &#0; &bogus",
        "<![CDATA[ x ]]>",
        "<div>" * 5000 + "deep" + "</div>" * 5000,
        "<!-- unterminated comment",
        "\x00\x01<b>\ud800</b>",
    ],
)
def test_hostile_markup_never_raises(hostile: str) -> None:
    result = html_to_text(hostile)
    assert isinstance(result, str)
    assert "<b>" not in result


def test_deep_nesting_keeps_text() -> None:
    assert html_to_text("<div>" * 5000 + "deep" + "</div>" * 5000) == "deep"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/&;#ab pdivscrt=\"'\n")), max_size=200))
def test_fuzz_never_raises(html: str) -> None:
    assert isinstance(html_to_text(html), str)
