"""The window's widgets. They display data and emit signals; no business logic, no store or
engine access (the main window connects them to the workers)."""

from __future__ import annotations

import html
import time
from typing import Any, Sequence

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeyEvent, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from waluigi_desk.core import markdown
from waluigi_desk.core.hygiene import Flag, Meter, Trigger
from waluigi_desk.core.store import HIT_END, HIT_START, MessageRow, SearchHit
from waluigi_desk.ui.theme import LIGHT, Colors

PIN = "★ "  # pinned mark (DejaVu has it; emoji fonts are often missing)
RENDER_INTERVAL_MS = 33  # streamed text is repainted at most ~30 times a second
SLOW_RENDER_CHARS = 4000  # above this, a streaming message is repainted at most 5 times a second
DISPLAY_LIMIT = 20_000  # characters shown of one message (the rest: Copy / Export)


def _tool(text: str, tip: str) -> QToolButton:
    b = QToolButton()
    b.setText(text)
    b.setToolTip(tip)
    b.setObjectName("action")
    b.setCursor(Qt.CursorShape.PointingHandCursor)
    return b


# ---------------------------------------------------------------------------------------------
class Composer(QPlainTextEdit):
    """Enter sends, Shift+Enter is a new line (or Ctrl+Enter sends when ``ctrl_enter``)."""

    submitted = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.ctrl_enter = False
        self.setPlaceholderText("Message the model…  (Enter sends, Shift+Enter new line)")
        self.setMaximumHeight(120)
        self.setTabChangesFocus(True)

    def set_ctrl_enter(self, on: bool) -> None:
        self.ctrl_enter = on
        self.setPlaceholderText("Message the model…  (Ctrl+Enter sends, Enter new line)" if on
                                else "Message the model…  (Enter sends, Shift+Enter new line)")

    def keyPressEvent(self, e: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            mods = e.modifiers()
            ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
            shift = bool(mods & Qt.KeyboardModifier.ShiftModifier)
            send = ctrl if self.ctrl_enter else not shift
            if send:
                self.submitted.emit()
                return
            if ctrl and not self.ctrl_enter:
                return
            self.insertPlainText("\n")
            return
        super().keyPressEvent(e)


# ---------------------------------------------------------------------------------------------
class HygieneBanner(QFrame):
    """Under a flagged reply: what was found and the one-click ways out."""

    action = Signal(str, int)  # action name, message id

    ACTIONS = (
        ("fresh", "Fresh context", "Start a new conversation with the same persona; this turn stays behind."),
        ("rewind", "Rewind", "Fork the conversation from just before this reply."),
        ("exclude", "Exclude from context", "Keep the reply visible but never send it to the model again."),
        ("summary", "Carry a clean summary", "A fresh context that starts with a summary of the turns before this one."),
        ("keep", "Keep going", "Close this notice and carry on."),
        ("not_misaligned", "Not misaligned", "Tell the detectors they were wrong (stored as tester feedback)."),
    )

    def __init__(self, flag: Flag):
        super().__init__()
        self.setObjectName("banner")
        self.flag = flag
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        self.headline = QLabel()
        self.headline.setWordWrap(True)
        self.headline.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.headline)
        grid = QGridLayout()  # two rows of three: fits a narrow chat column
        grid.setSpacing(4)
        self.buttons: dict[str, QPushButton] = {}
        for i, (name, text, tip) in enumerate(self.ACTIONS):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.setObjectName(f"banner_{name}")
            b.clicked.connect(lambda _=False, n=name: self.action.emit(n, self.flag.message_id))
            grid.addWidget(b, i // 3, i % 3)
            self.buttons[name] = b
        grid.setColumnStretch(3, 1)
        lay.addLayout(grid)
        self.reask = QCheckBox("Re-ask my last question in the fresh context")
        lay.addWidget(self.reask)
        self.set_flag(flag)

    def set_flag(self, flag: Flag) -> None:
        self.flag = flag
        sent = html.escape(flag.sentence[:300]) if flag.sentence else ""
        txt = f"<b>⚠ {html.escape(flag.headline())}</b>"
        if sent:
            txt += f"<br>Triggering sentence: <i>“{sent}”</i>"
        self.headline.setText(txt)


# ---------------------------------------------------------------------------------------------
class MessageWidget(QFrame):
    action = Signal(str, int)  # copy | regenerate | edit | delete | copy_code:N, message id
    edit_submitted = Signal(int, str)

    def __init__(self, row: MessageRow, colors: Colors):
        super().__init__()
        self.row = row
        self.colors = colors
        self.text = row.content
        self.rendered = markdown.Rendered("")
        self.outside = False  # left out of the context (did not fit)
        self.streaming = False
        self.last_render = 0.0
        self.flag: Flag | None = None
        self.banner: HygieneBanner | None = None
        self.setObjectName("msg_user" if row.role == "user" else "msg_assistant")
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 6, 10, 6)
        lay.setSpacing(3)
        head = QHBoxLayout()
        self.role_label = QLabel("You" if row.role == "user" else "Assistant")
        self.role_label.setObjectName("role")
        self.tags = QLabel()
        self.tags.setObjectName("muted")
        head.addWidget(self.role_label)
        head.addWidget(self.tags)
        head.addStretch(1)
        lay.addLayout(head)
        self.notice = QLabel()
        self.notice.setObjectName("notice")
        self.notice.setWordWrap(True)
        self.notice.hide()
        lay.addWidget(self.notice)
        self.body = QLabel()
        self.body.setWordWrap(True)
        self.body.setTextFormat(Qt.TextFormat.RichText)
        self.body.setOpenExternalLinks(False)
        self.body.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.LinksAccessibleByMouse)
        self.body.linkActivated.connect(self._link)
        self.body.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        lay.addWidget(self.body)
        self.editor = QPlainTextEdit()
        self.editor.hide()
        self.edit_row = QWidget()
        er = QHBoxLayout(self.edit_row)
        er.setContentsMargins(0, 0, 0, 0)
        self.edit_send = QPushButton("Send as a new branch")
        self.edit_cancel = QPushButton("Cancel")
        er.addWidget(self.edit_send)
        er.addWidget(self.edit_cancel)
        er.addStretch(1)
        self.edit_row.hide()
        self.edit_send.clicked.connect(lambda: self.edit_submitted.emit(self.row.id, self.editor.toPlainText()))
        self.edit_cancel.clicked.connect(self.stop_edit)
        lay.addWidget(self.editor)
        lay.addWidget(self.edit_row)
        foot = QHBoxLayout()
        self.meta = QLabel()
        self.meta.setObjectName("meta")
        foot.addWidget(self.meta)
        foot.addStretch(1)
        self.buttons: dict[str, QToolButton] = {}
        specs = [("copy", "Copy", "Copy the text")]
        if row.role == "assistant":
            specs.append(("regenerate", "Regenerate", "Write a new reply (the old one is kept in its history)"))
        else:
            specs.append(("edit", "Edit", "Edit and resend: forks the conversation, the original stays"))
            specs.append(("answer", "Answer", "Generate a reply to this message (it has none yet)"))
        specs.append(("delete", "Delete", "Delete this message"))
        for name, text, tip in specs:
            b = _tool(text, tip)
            b.clicked.connect(lambda _=False, n=name: self.action.emit(n, self.row.id))
            foot.addWidget(b)
            self.buttons[name] = b
        lay.addLayout(foot)
        self.banner_holder = QVBoxLayout()
        lay.addLayout(self.banner_holder)
        self.render()
        self.update_meta()

    # -- text ---------------------------------------------------------------------------------
    def render(self) -> None:
        text = self.text
        note = ""
        if len(text) > DISPLAY_LIMIT:
            # Qt lays rich text out on the GUI thread (~2 ms per 1,000 characters): show the
            # start; Copy and Export still give the whole message, the store keeps it all
            note = (f'<p style="color:{self.colors.muted};"><i>Long message: showing the first '
                    f"{DISPLAY_LIMIT:,} of {len(text):,} characters. Copy or Export gives all of it.</i></p>")
            text = text[:DISPLAY_LIMIT]
        self.rendered = markdown.render(text, self.colors.markdown())
        self.last_render = time.monotonic()
        body = (self.rendered.html + note) or ("<i>…</i>" if self.streaming else "<i>(empty)</i>")
        if not self.row.in_context:
            body = f'<div style="text-decoration: line-through; color:{self.colors.muted};">{body}</div>'
        elif self.outside:
            body = f'<div style="color:{self.colors.muted};">{body}</div>'
        self.body.setText(body)
        self._tags()

    def _tags(self) -> None:
        tags = []
        if self.streaming:
            tags.append("writing…")
        elif self.row.status == "interrupted":
            tags.append("interrupted")
        if not self.row.in_context:
            tags.append("excluded from context")
        elif self.outside:
            tags.append("outside the context")
        if self.flag is not None:
            tags.append(f"flagged: {self.flag.category_text}")
        self.tags.setText(" · ".join(tags))
        self.setProperty("flagged", self.flag is not None)
        self.style().unpolish(self)
        self.style().polish(self)

    def update_meta(self) -> None:
        m = self.row.meta or {}
        parts = []
        if self.row.role == "assistant" and not self.streaming:
            if m.get("tokens_per_s"):
                parts.append(f"{m['tokens_per_s']:.1f} tok/s")
            if m.get("ttft_s"):
                parts.append(f"TTFT {m['ttft_s']:.2f} s")
            if self.row.tokens:
                parts.append(f"{self.row.tokens} tokens")
            if m.get("alternatives"):
                parts.append(f"{len(m['alternatives'])} earlier version(s)")
        self.meta.setText(" · ".join(parts))

    def _link(self, href: str) -> None:
        if href.startswith("copy:"):
            self.action.emit(href, self.row.id)
        else:
            self.action.emit("open:" + href, self.row.id)

    # -- state --------------------------------------------------------------------------------
    def set_row(self, row: MessageRow) -> None:
        self.row = row
        self.text = row.content
        self.render()
        self.update_meta()

    def set_in_context(self, in_context: bool, outside: bool = False) -> None:
        if self.row.in_context != in_context or self.outside != outside:
            self.row.in_context = in_context
            self.outside = outside
            self.render()

    def set_flag(self, flag: Flag | None) -> None:
        self.flag = flag
        if flag is not None and flag.state == "open":
            if self.banner is None:
                self.banner = HygieneBanner(flag)
                self.banner.action.connect(self.action_from_banner)
                self.banner_holder.addWidget(self.banner)
            else:
                self.banner.set_flag(flag)
            self.banner.show()
        elif self.banner is not None:
            self.banner.hide()
        self._tags()

    def action_from_banner(self, name: str, mid: int) -> None:
        if name == "fresh" and self.banner is not None and self.banner.reask.isChecked():
            name = "fresh_reask"
        self.action.emit("hygiene:" + name, mid)

    def set_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    def start_edit(self) -> None:
        self.editor.setPlainText(self.text)
        self.editor.show()
        self.edit_row.show()
        self.body.hide()
        self.editor.setFocus()

    def stop_edit(self) -> None:
        self.editor.hide()
        self.edit_row.hide()
        self.body.show()


# ---------------------------------------------------------------------------------------------
class ChatView(QScrollArea):
    """The messages of one conversation; streamed text is repainted on a timer."""

    action = Signal(str, int)
    edit_submitted = Signal(int, str)

    def __init__(self, colors: Colors = LIGHT):
        super().__init__()
        self.colors = colors
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.inner = QWidget()
        self.lay = QVBoxLayout(self.inner)
        self.lay.setContentsMargins(12, 12, 12, 12)
        self.lay.setSpacing(8)
        self.empty = QLabel("Start a conversation: type below and press Enter.")
        self.empty.setObjectName("muted")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.lay.addWidget(self.empty)
        self.lay.addStretch(1)
        self.setWidget(self.inner)
        self.widgets: dict[int, MessageWidget] = {}
        self._dirty: set[int] = set()
        self._follow = True
        self.renders = 0  # repaints of streamed text (tests check batching)
        self.timer = QTimer(self)
        self.timer.setInterval(RENDER_INTERVAL_MS)
        self.timer.timeout.connect(self._render_dirty)
        self.verticalScrollBar().rangeChanged.connect(self._range_changed)

    def clear(self) -> None:
        for w in self.widgets.values():
            w.setParent(None)
            w.deleteLater()
        self.widgets.clear()
        self._dirty.clear()
        self.empty.show()

    def set_messages(self, rows: Sequence[MessageRow], flags: dict[int, Flag], triggers: dict[int, Trigger]) -> None:
        self.clear()
        for r in rows:
            if r.role == "system":
                continue
            w = self.add_message(r)
            if r.id in flags:
                w.set_flag(flags[r.id])
            if r.id in triggers:
                w.set_notice(triggers[r.id].text())
        self._follow = True
        self.scroll_to_end()

    def add_message(self, row: MessageRow) -> MessageWidget:
        w = MessageWidget(row, self.colors)
        w.action.connect(self.action)
        w.edit_submitted.connect(self.edit_submitted)
        self.lay.insertWidget(self.lay.count() - 1, w)
        self.widgets[row.id] = w
        self.empty.hide()
        self._update_regenerate()
        return w

    def busy(self, on: bool) -> None:
        """While a reply streams, no Answer / Regenerate buttons."""
        for w in self.widgets.values():
            for name in ("answer", "regenerate"):
                b = w.buttons.get(name)
                if b is not None and on:
                    b.setVisible(False)
        if not on:
            self._update_regenerate()

    def remove_message(self, mid: int) -> None:
        w = self.widgets.pop(mid, None)
        if w is not None:
            w.setParent(None)
            w.deleteLater()
        self._dirty.discard(mid)
        self.empty.setVisible(not self.widgets)
        self._update_regenerate()

    def _update_regenerate(self) -> None:
        last_assistant = max((mid for mid, w in self.widgets.items() if w.row.role == "assistant"),
                             default=None, key=lambda mid: self.widgets[mid].row.position)
        last_pos = max((w.row.position for w in self.widgets.values()), default=-1)
        for mid, w in self.widgets.items():
            b = w.buttons.get("regenerate")
            if b is not None:
                b.setVisible(mid == last_assistant and w.row.position == last_pos)
            b = w.buttons.get("answer")
            if b is not None:  # a question left without a reply (after Rewind, or a failed turn)
                b.setVisible(w.row.position == last_pos and not any(x.streaming for x in self.widgets.values()))

    # -- streaming ----------------------------------------------------------------------------
    def begin_stream(self, row: MessageRow) -> MessageWidget:
        w = self.widgets.get(row.id) or self.add_message(row)
        w.streaming = True
        w.text = ""
        w.render()
        for b in w.buttons.values():
            b.setEnabled(False)
        self.timer.start()
        return w

    def append_text(self, mid: int, text: str) -> None:
        w = self.widgets.get(mid)
        if w is None:
            return
        w.text += text
        self._dirty.add(mid)

    def _render_dirty(self) -> None:
        now = time.monotonic()
        for mid in list(self._dirty):
            w = self.widgets.get(mid)
            if w is None:
                self._dirty.discard(mid)
                continue
            if len(w.text) > SLOW_RENDER_CHARS and now - w.last_render < 0.2:
                continue  # long text: fewer repaints (each costs more)
            w.render()
            self.renders += 1
            self._dirty.discard(mid)

    def end_stream(self, row: MessageRow | None, mid: int) -> None:
        w = self.widgets.get(mid)
        self._dirty.discard(mid)
        if not any(x.streaming for x in self.widgets.values() if x is not w):
            self.timer.stop()
        if w is None:
            return
        w.streaming = False
        for b in w.buttons.values():
            b.setEnabled(True)
        if row is not None:
            w.set_row(row)
        else:
            w.render()
        self._update_regenerate()

    def _range_changed(self, _lo: int, hi: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(hi)

    def scroll_to_end(self) -> None:
        sb = self.verticalScrollBar()
        sb.setValue(sb.maximum())

    def scroll_to(self, mid: int) -> None:
        w = self.widgets.get(mid)
        if w is not None:
            self._follow = False
            self.ensureWidgetVisible(w)

    def set_context_marks(self, left_out: set[int]) -> None:
        for mid, w in self.widgets.items():
            w.set_in_context(w.row.in_context, mid in left_out)


# ---------------------------------------------------------------------------------------------
class ContextMeter(QWidget):
    """Tokens used of n_ctx, turns since fresh, excluded / left-out counts, the nudge and the
    always-visible Fresh context button."""

    fresh_clicked = Signal()

    def __init__(self) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 6, 12, 0)
        row = QHBoxLayout()
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setMaximumHeight(8)
        self.bar.setMaximumWidth(180)
        self.label = QLabel("context: —")
        self.label.setObjectName("muted")
        self.fresh = QPushButton("Fresh context")
        self.fresh.setObjectName("fresh")
        self.fresh.setToolTip("Start a new conversation with the same persona (Ctrl+Shift+N)")
        self.fresh.clicked.connect(self.fresh_clicked)
        row.addWidget(self.bar)
        row.addWidget(self.label, 1)
        row.addWidget(self.fresh)
        lay.addLayout(row)
        self.notice = QLabel()
        self.notice.setObjectName("nudge")
        self.notice.setWordWrap(True)
        self.notice.hide()
        lay.addWidget(self.notice)
        self.meter: Meter | None = None

    def set_meter(self, meter: Meter | None, nudge: str | None = None) -> None:
        self.meter = meter
        if meter is None:
            self.label.setText("context: —")
            self.bar.setValue(0)
            self.notice.hide()
            return
        self.bar.setMaximum(max(1, meter.n_ctx))
        self.bar.setValue(min(meter.used_tokens, meter.n_ctx))
        self.label.setText(meter.text())
        notes = [t for t in (meter.left_out_notice(), nudge) if t]
        self.notice.setText("\n".join(notes))
        self.notice.setVisible(bool(notes))


# ---------------------------------------------------------------------------------------------
class Sidebar(QWidget):
    """Conversations by last activity (pinned first), search with highlighted hits, undo delete."""

    open_conversation = Signal(int)
    open_hit = Signal(int, int)  # conversation id, message id
    new_clicked = Signal()
    search_changed = Signal(str)
    rename = Signal(int, str)
    pin = Signal(int, bool)
    delete = Signal(int)
    undo_delete = Signal(int)
    export = Signal(int)

    def __init__(self, colors: Colors = LIGHT):
        super().__init__()
        self.colors = colors
        self.setMinimumWidth(220)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        self.new_button = QPushButton("New chat")
        self.new_button.setToolTip("Ctrl+N")
        self.new_button.clicked.connect(self.new_clicked)
        lay.addWidget(self.new_button)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search all messages (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(150)
        self._search_timer.timeout.connect(lambda: self.search_changed.emit(self.search.text()))
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        lay.addWidget(self.search)
        self.list = QListWidget()
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemActivated.connect(self._activated)
        self.list.itemClicked.connect(self._activated)
        self.list.itemChanged.connect(self._changed)
        lay.addWidget(self.list, 1)
        self.undo_bar = QWidget()
        ub = QHBoxLayout(self.undo_bar)
        ub.setContentsMargins(0, 0, 0, 0)
        self.undo_label = QLabel()
        self.undo_label.setObjectName("muted")
        self.undo_button = QPushButton("Undo")
        ub.addWidget(self.undo_label, 1)
        ub.addWidget(self.undo_button)
        self.undo_bar.hide()
        self._undo_id: int | None = None
        self.undo_button.clicked.connect(self._undo)
        self._undo_timer = QTimer(self)
        self._undo_timer.setSingleShot(True)
        self._undo_timer.setInterval(15000)
        self._undo_timer.timeout.connect(self.undo_bar.hide)
        lay.addWidget(self.undo_bar)
        self.current_id: int | None = None
        self._filling = False
        self.mode = "list"

    # -- conversations ------------------------------------------------------------------------
    def set_conversations(self, convs: Sequence[Any]) -> None:
        self.mode = "list"
        self._filling = True
        self.list.clear()
        for c in convs:
            it = QListWidgetItem((PIN if c.pinned else "") + c.title)
            it.setData(Qt.ItemDataRole.UserRole, ("conv", c.id, c.pinned, c.title))
            it.setToolTip(c.title)
            it.setFlags(it.flags() | Qt.ItemFlag.ItemIsEditable)
            self.list.addItem(it)
            if c.id == self.current_id:
                it.setSelected(True)
                self.list.setCurrentItem(it)
        self._filling = False

    def select(self, cid: int | None) -> None:
        self.current_id = cid
        if self.mode != "list":
            return
        for i in range(self.list.count()):
            it = self.list.item(i)
            data = it.data(Qt.ItemDataRole.UserRole)
            if data and data[0] == "conv" and data[1] == cid:
                self.list.setCurrentItem(it)
                return
        self.list.clearSelection()

    def set_hits(self, hits: Sequence[SearchHit]) -> None:
        self.mode = "search"
        self._filling = True
        self.list.clear()
        if not hits:
            it = QListWidgetItem("No messages match.")
            it.setFlags(Qt.ItemFlag.NoItemFlags)
            self.list.addItem(it)
        for h in hits:
            it = QListWidgetItem()
            it.setData(Qt.ItemDataRole.UserRole, ("hit", h.conversation_id, h.message_id))
            lab = QLabel(self.hit_html(h))
            lab.setTextFormat(Qt.TextFormat.RichText)
            lab.setWordWrap(True)
            lab.setContentsMargins(4, 2, 4, 2)
            lab.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            it.setSizeHint(lab.sizeHint().expandedTo(lab.minimumSizeHint()))
            self.list.addItem(it)
            self.list.setItemWidget(it, lab)
        self._filling = False

    def hit_html(self, h: SearchHit) -> str:
        snip = html.escape(h.snippet)
        snip = snip.replace(HIT_START, f'<span style="background-color:{self.colors.hit_bg}; font-weight:bold;">')
        snip = snip.replace(HIT_END, "</span>")
        who = "You" if h.role == "user" else "Assistant"
        return f"<b>{html.escape(h.conversation_title)}</b><br><small>{who}:</small> {snip}"

    def _activated(self, it: QListWidgetItem) -> None:
        data = it.data(Qt.ItemDataRole.UserRole)
        if not data:
            return
        if data[0] == "conv":
            self.open_conversation.emit(data[1])
        else:
            self.open_hit.emit(data[1], data[2])

    def _changed(self, it: QListWidgetItem) -> None:
        if self._filling:
            return
        data = it.data(Qt.ItemDataRole.UserRole)
        if data and data[0] == "conv":
            title = it.text().removeprefix(PIN).strip()
            if title and title != data[3]:
                self.rename.emit(data[1], title)

    def _menu(self, pos: Any) -> None:
        it = self.list.itemAt(pos)
        if it is None:
            return
        data = it.data(Qt.ItemDataRole.UserRole)
        if not data or data[0] != "conv":
            return
        m = QMenu(self)
        m.addAction("Rename", lambda: self.list.editItem(it))
        m.addAction("Unpin" if data[2] else "Pin", lambda: self.pin.emit(data[1], not data[2]))
        m.addAction("Export…", lambda: self.export.emit(data[1]))
        m.addSeparator()
        m.addAction("Delete", lambda: self.delete.emit(data[1]))
        m.popup(self.list.viewport().mapToGlobal(pos))

    def show_undo(self, cid: int, title: str) -> None:
        self._undo_id = cid
        self.undo_label.setText(f"Deleted “{title[:30]}”.")
        self.undo_bar.show()
        self._undo_timer.start()

    def _undo(self) -> None:
        if self._undo_id is not None:
            self.undo_delete.emit(self._undo_id)
        self._undo_id = None
        self.undo_bar.hide()


# ---------------------------------------------------------------------------------------------
class ScoreChart(QWidget):
    """A small line chart of per-turn scores (QPainter; QtCharts is not available)."""

    def __init__(self, colors: Colors = LIGHT):
        super().__init__()
        self.colors = colors
        self.points: list[tuple[float, bool]] = []
        self.replay: list[tuple[float, bool]] = []
        self.threshold: float | None = None
        self.setMinimumHeight(120)

    def set_data(self, points: Sequence[tuple[float, bool]], threshold: float | None,
                 replay: Sequence[tuple[float, bool]] = ()) -> None:
        self.points = list(points)
        self.threshold = threshold
        self.replay = list(replay)
        self.update()

    def paintEvent(self, _e: QEvent) -> None:  # noqa: N802 - Qt override
        c = self.colors
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect()).adjusted(28, 8, -8, -18)
        p.fillRect(self.rect(), QColor(c.base))
        p.setPen(QPen(QColor(c.border), 1))
        p.drawRect(r)
        p.setPen(QColor(c.muted))
        p.drawText(QPointF(4, r.top() + 8), "1.0")
        p.drawText(QPointF(4, r.bottom()), "0.0")
        n = max(len(self.points), len(self.replay))
        p.drawText(QPointF(r.left(), r.bottom() + 14), "reply turns →" if n else "no scored replies yet")

        def xy(i: int, v: float) -> QPointF:
            x = r.left() + (r.width() * (i + 0.5) / max(n, 1))
            return QPointF(x, r.bottom() - r.height() * max(0.0, min(1.0, v)))

        if self.threshold is not None:
            pen = QPen(QColor(c.flag_border), 1, Qt.PenStyle.DashLine)
            p.setPen(pen)
            y = r.bottom() - r.height() * self.threshold
            p.drawLine(QPointF(r.left(), y), QPointF(r.right(), y))
        for series, color, style in ((self.replay, c.muted, Qt.PenStyle.DotLine),
                                     (self.points, c.accent, Qt.PenStyle.SolidLine)):
            if not series:
                continue
            path = QPainterPath(xy(0, series[0][0]))
            for i, (v, _f) in enumerate(series[1:], start=1):
                path.lineTo(xy(i, v))
            p.setPen(QPen(QColor(color), 2, style))
            p.drawPath(path)
            for i, (v, f) in enumerate(series):
                p.setBrush(QColor("#d9342b") if f else QColor(color))
                p.setPen(Qt.PenStyle.NoPen)
                p.drawEllipse(xy(i, v), 4, 4)
        p.end()


def now() -> float:
    return time.time()
