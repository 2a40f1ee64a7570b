"""Safe Markdown for the chat view (no Qt here: the widgets only display the HTML).

Model output is untrusted text. Rules:
- raw HTML in the text is escaped, never interpreted;
- nothing is ever loaded: an image becomes a plain-text mention with its address, links are
  kept as links only for ``http``, ``https`` and ``mailto`` (a click opens the system browser;
  nothing is fetched to display them) and other schemes (``file:``, ``javascript:``, ``data:``)
  become plain text;
- fenced code blocks get a "Copy" anchor ``copy:N``; :class:`Rendered` keeps their text so the
  view can put it on the clipboard;
- deeply nested input, huge input (1 MB) or a parser failure falls back to escaped plain text,
  so every message can be shown.

The HTML is the subset Qt's rich text supports (tables instead of styled divs).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

import mistune
from mistune.renderers.html import HTMLRenderer

SAFE_SCHEMES = ("http://", "https://", "mailto:")
PLAIN_ABOVE = 200_000  # characters; longer text is shown as escaped plain text (fast, lossless)
MAX_NESTING = 24  # quote/list markers at the start of a line before we stop parsing as Markdown


@dataclass
class Rendered:
    html: str
    code_blocks: list[str] = field(default_factory=list)
    plain: bool = False  # True when the fallback (escaped plain text) was used


@dataclass
class Palette:
    """Colours the HTML uses (the view passes the theme's)."""

    code_bg: str = "#f3f3f5"
    code_border: str = "#d0d0d8"
    code_head: str = "#666670"
    link: str = "#2a62c9"


def _esc(s: str) -> str:
    return html.escape(s, quote=True)


class _SafeRenderer(HTMLRenderer):
    def __init__(self, palette: Palette):
        super().__init__(escape=True, allow_harmful_protocols=False)
        self.palette = palette
        self.code_blocks: list[str] = []

    def image(self, text: str, url: str, title: str | None = None) -> str:
        alt = re.sub(r"<[^>]*>", "", text or "")
        return f"[image: {alt or 'no description'}] ({_esc(url or '')})"

    def link(self, text: str, url: str, title: str | None = None) -> str:
        u = (url or "").strip()
        if not u.lower().startswith(SAFE_SCHEMES):
            return f"{text} ({_esc(u)})" if u else text
        return f'<a href="{_esc(u)}" style="color:{self.palette.link}">{text}</a>'

    def block_code(self, code: str, info: str | None = None) -> str:
        n = len(self.code_blocks)
        self.code_blocks.append(code.rstrip("\n"))
        lang = _esc((info or "").split()[0]) if info else "code"
        p = self.palette
        return (
            f'<table width="100%" cellspacing="0" cellpadding="6" style="margin:4px 0; '
            f'background-color:{p.code_bg}; border:1px solid {p.code_border};">'
            f'<tr><td style="color:{p.code_head}; font-size:small;">{lang} &nbsp; '
            f'<a href="copy:{n}" style="color:{p.link}">Copy</a></td></tr>'
            f'<tr><td><pre style="margin:0; white-space:pre-wrap;">{_esc(code.rstrip(chr(10)))}</pre>'
            f"</td></tr></table>\n"
        )

    def block_html(self, html_text: str) -> str:
        return "<p>" + _esc(html_text) + "</p>\n"

    def inline_html(self, html_text: str) -> str:
        return _esc(html_text)


def plain_html(text: str) -> str:
    """Escaped text with line breaks kept (the fallback)."""
    return '<div style="white-space:pre-wrap;">' + _esc(text) + "</div>"


_NEST_RE = re.compile(r"^[ \t]*(?:[>*+\-][ \t]*|\d+[.)][ \t]*){%d,}" % MAX_NESTING, re.MULTILINE)


def _too_nested(text: str) -> bool:
    if _NEST_RE.search(text):
        return True
    # brackets / emphasis runs make inline parsing slow; a long run is not meant as Markdown
    return re.search(r"[\[\]*_`~]{200,}", text) is not None


def render(text: str, palette: Palette | None = None) -> Rendered:
    """Markdown ``text`` as safe HTML for a Qt rich-text label."""
    palette = palette or Palette()
    if not text:
        return Rendered("")
    if len(text) > PLAIN_ABOVE or _too_nested(text):
        return Rendered(plain_html(text), [], plain=True)
    renderer = _SafeRenderer(palette)
    md = mistune.create_markdown(renderer=renderer, plugins=["strikethrough", "table"])
    try:
        out: Any = md(text)
    except (RecursionError, ValueError, IndexError, KeyError, TypeError, AttributeError):
        return Rendered(plain_html(text), [], plain=True)
    return Rendered(str(out), renderer.code_blocks)


def code_blocks(text: str) -> list[str]:
    """The fenced code blocks of ``text`` in order (what the Copy anchors refer to)."""
    return render(text).code_blocks
