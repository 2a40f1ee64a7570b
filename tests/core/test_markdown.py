"""core/markdown.py: safe rendering of untrusted model output."""

from __future__ import annotations

import time

from hypothesis import given, settings, strategies as st

from waluigi_desk.core.markdown import render


def test_basic_markdown_and_code_blocks():
    r = render("# Title\n\n**bold** *it* `code`\n\n```python\nx = '<b>'\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<h1>Title</h1>" in r.html and "<strong>bold</strong>" in r.html and "<code>code</code>" in r.html
    assert r.code_blocks == ["x = '<b>'"]
    assert 'href="copy:0"' in r.html and "x = &#x27;&lt;b&gt;&#x27;" in r.html
    assert "<table" in r.html and not r.plain


def test_raw_html_is_escaped():
    r = render("hello <script>alert(1)</script> <img src=x onerror=alert(1)> <b>b</b>")
    assert "<script" not in r.html and "<img" not in r.html and "<b>" not in r.html
    assert "&lt;script&gt;" in r.html
    r = render("<div>\nblock html\n</div>")
    assert "<div>" not in r.html and "&lt;div&gt;" in r.html


def test_nothing_is_loaded_images_become_text_and_unsafe_links_plain():
    r = render("![cat](http://example.com/cat.png) ![l](file:///etc/passwd) [ok](https://example.com) "
               "[bad](javascript:alert(1)) [f](file:///etc/passwd) [d](data:text/html,hi)")
    assert "<img" not in r.html
    assert "[image: cat] (http://example.com/cat.png)" in r.html
    assert '<a href="https://example.com"' in r.html
    for bad in ("javascript:", "file:", "data:"):
        assert f'href="{bad}' not in r.html
    assert "bad (javascript:alert(1))" in r.html


def test_deep_nesting_and_huge_input_survive():
    for text in (">" * 20000 + " deep", "- " * 5000 + "x", "[" * 100000, "*" * 50000, "1. " * 3000 + "y"):
        t = time.perf_counter()
        r = render(text)
        assert r.html and time.perf_counter() - t < 5
    big = ("word " * 200_000)[:1_000_000]
    r = render(big)
    assert r.plain and len(r.html) >= len(big)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>&\"'*_`[]()!#-> \n|~\\abcx1.:/")), max_size=400))
def test_random_input_never_leaks_tags(text):
    r = render(text)
    html = r.html
    for tag in ("<script", "<img", "<iframe", "<style", "<object", "<svg"):
        assert tag not in html.lower()
    # every anchor we emit is either a copy link or a safe scheme
    import re

    for href in re.findall(r'href="([^"]*)"', html):
        assert href.startswith(("copy:", "http://", "https://", "mailto:"))
