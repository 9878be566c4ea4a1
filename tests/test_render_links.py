"""The HTML report's inline markdown: evidence URLs of findings become real links, the rest is
escaped."""

from xentbench.suites.report.render import _inline


def test_markdown_link_to_a_url_becomes_an_anchor():
    html = _inline("see [bug 123](https://github.com/o/r/issues/123) now")
    assert html == 'see <a href="https://github.com/o/r/issues/123">bug 123</a> now'


def test_bare_url_becomes_a_link_without_its_sentence_punctuation():
    html = _inline("documented at https://www.tensorflow.org/api_docs/x.")
    assert html == (
        'documented at <a href="https://www.tensorflow.org/api_docs/x">'
        "https://www.tensorflow.org/api_docs/x</a>."
    )


def test_anchor_links_still_work():
    assert _inline("[Findings](#findings)") == '<a href="#findings">Findings</a>'


def test_everything_else_is_escaped():
    html = _inline('<script>alert("x")</script> [t](javascript:alert(1)) a & b')
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "href" not in html  # only #anchors and http(s) URLs are linked
    assert "a &amp; b" in html


def test_a_url_cannot_break_out_of_its_attribute():
    html = _inline('https://example.org/"onmouseover="x')
    assert 'href="https://example.org/&quot;onmouseover=&quot;x"' in html
