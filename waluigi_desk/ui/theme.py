"""Light and dark themes (setting ``theme``: system | light | dark). ``system`` follows the
platform's colour scheme and changes with it."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from waluigi_desk.core.markdown import Palette


@dataclass(frozen=True)
class Colors:
    dark: bool
    window: str
    base: str
    text: str
    muted: str
    user_bg: str
    assistant_bg: str
    border: str
    accent: str
    flag_bg: str
    flag_border: str
    notice_bg: str
    hit_bg: str
    code_bg: str

    def markdown(self) -> Palette:
        return Palette(code_bg=self.code_bg, code_border=self.border, code_head=self.muted, link=self.accent)


LIGHT = Colors(False, "#f4f4f6", "#ffffff", "#1d1d22", "#6b6b76", "#e8f0fe", "#ffffff", "#d6d6de",
               "#2a62c9", "#fff1e6", "#e8863a", "#fffbe6", "#ffe066", "#f3f3f5")
DARK = Colors(True, "#1e1f24", "#26272d", "#e6e6ea", "#9a9aa6", "#2b3550", "#2a2b31", "#3a3b44",
              "#7aa7ff", "#3d2a1e", "#e8863a", "#3a3520", "#8a6d00", "#1b1c20")


def system_is_dark(app: QApplication) -> bool:
    try:
        return app.styleHints().colorScheme() == Qt.ColorScheme.Dark
    except AttributeError:  # pragma: no cover - Qt < 6.5
        return app.palette().color(QPalette.ColorRole.Window).lightness() < 128


def resolve(theme: str, app: QApplication) -> Colors:
    if theme == "dark":
        return DARK
    if theme == "light":
        return LIGHT
    return DARK if system_is_dark(app) else LIGHT


def apply(app: QApplication, theme: str) -> Colors:
    c = resolve(theme, app)
    app.setStyle("Fusion")
    pal = QPalette()
    role = QPalette.ColorRole
    pal.setColor(role.Window, QColor(c.window))
    pal.setColor(role.WindowText, QColor(c.text))
    pal.setColor(role.Base, QColor(c.base))
    pal.setColor(role.AlternateBase, QColor(c.window))
    pal.setColor(role.Text, QColor(c.text))
    pal.setColor(role.Button, QColor(c.window))
    pal.setColor(role.ButtonText, QColor(c.text))
    pal.setColor(role.Highlight, QColor(c.accent))
    pal.setColor(role.HighlightedText, QColor("#ffffff"))
    pal.setColor(role.ToolTipBase, QColor(c.base))
    pal.setColor(role.ToolTipText, QColor(c.text))
    pal.setColor(role.PlaceholderText, QColor(c.muted))
    pal.setColor(role.Link, QColor(c.accent))
    pal.setColor(QPalette.ColorGroup.Disabled, role.Text, QColor(c.muted))
    pal.setColor(QPalette.ColorGroup.Disabled, role.ButtonText, QColor(c.muted))
    app.setPalette(pal)
    app.setStyleSheet(stylesheet(c))
    return c


def stylesheet(c: Colors) -> str:
    return f"""
    QFrame#msg_user {{ background: {c.user_bg}; border: 1px solid {c.border}; border-radius: 8px; }}
    QFrame#msg_assistant {{ background: {c.assistant_bg}; border: 1px solid {c.border}; border-radius: 8px; }}
    QFrame#msg_assistant[flagged="true"] {{ border: 2px solid {c.flag_border}; }}
    QFrame#banner {{ background: {c.flag_bg}; border: 1px solid {c.flag_border}; border-radius: 6px; }}
    QLabel#notice, QLabel#nudge {{ background: {c.notice_bg}; border-radius: 4px; padding: 4px; }}
    QLabel#meta, QLabel#muted {{ color: {c.muted}; }}
    QLabel#role {{ font-weight: bold; }}
    QToolButton#action {{ border: none; color: {c.muted}; padding: 1px 4px; }}
    QToolButton#action:hover {{ color: {c.accent}; }}
    QPushButton#fresh {{ font-weight: bold; }}
    """
