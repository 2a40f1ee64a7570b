"""The main window: builds the widgets, starts the workers, and wires them in
:meth:`MainWindow._connect_signals`. Business logic lives in ``core`` (chat, hygiene, personas,
export); store reads and writes run in the DB worker, generation in the engine worker, scoring in
the detector worker. The GUI thread only sends requests and shows results."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QThread, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from waluigi_desk.core import export as export_mod
from waluigi_desk.core import hygiene, personas
from waluigi_desk.core.hygiene import Flag, Trigger
from waluigi_desk.core.store import MessageRow
from waluigi_desk.errors import KnownError
from waluigi_desk.ui import theme
from waluigi_desk.ui.widgets import ChatView, Composer, ContextMeter, Sidebar
from waluigi_desk.ui.workers import DbWorker, DetectorWorker, EngineWorker, default_detector_factory, start_in_thread

EDIT_PERSONAS = "Edit personas…"


def default_engine_factory(settings: Any) -> Any:
    from waluigi_desk.core.engine import create_engine

    return create_engine(settings)


def validate_model_file(path: str) -> str:
    """The model's name if ``path`` is a usable chat GGUF, else ModelError (one sentence)."""
    import os

    from waluigi_desk.core.engine.llama import KNOWN_ARCHITECTURES, NOT_CHAT_ARCHITECTURES
    from waluigi_desk.core.models import read_gguf_header
    from waluigi_desk.errors import ModelError

    m = read_gguf_header(path)
    if m.architecture not in KNOWN_ARCHITECTURES:
        raise ModelError(f"{os.path.basename(m.path)} uses the architecture '{m.architecture}', which this "
                         "llama-cpp-python build does not support.")
    if m.architecture in NOT_CHAT_ARCHITECTURES:
        raise ModelError(f"{os.path.basename(m.path)} is a '{m.architecture}' model (an encoder or "
                         "embedding model), not a chat model.")
    return m.name


class MainWindow(QMainWindow):
    # requests to the workers (queued: the workers live in other threads)
    _db_call = Signal(int, object)
    _engine_load = Signal()
    _engine_send = Signal(object)
    _engine_reply = Signal(object)
    _engine_regenerate = Signal(object)
    _engine_plan = Signal(int)
    _engine_summarise = Signal(object)
    _detector_load = Signal()
    _detector_check = Signal(int, int)
    _detector_score = Signal(int, int)
    _detector_replay = Signal(int)
    # what happened (for the app hooks, the bench and tests)
    model_loaded = Signal(object)
    reply_finished = Signal(object)
    verdict_received = Signal(int, int, object)
    conversation_opened = Signal(int)
    summary_offered = Signal(str)
    settings_changed = Signal(str)  # emitted by the Settings listener from any thread

    def __init__(
        self,
        store: Any,
        settings: Any,
        *,
        engine_factory: Callable[[Any], Any] = default_engine_factory,
        detector_factory: Callable[[Any, Any], Any] = default_detector_factory,
        notice: str | None = None,
        load_detectors_early: bool = True,
        autoload: bool = True,
    ):
        super().__init__()
        self.store = store
        self.settings = settings
        self.colors = theme.resolve(settings.get("theme"), QGuiApplication.instance())  # type: ignore[arg-type]
        self.current_id: int | None = None
        self.persona_name = personas.PRESETS[0].name
        self.streaming: dict[str, Any] | None = None  # {"cid", "reply_id", "cancel", "kind"}
        self.cancel: threading.Event | None = None
        self.model_info: dict[str, Any] = {}
        self.gpu_supported = False
        self.errors: list[str] = []
        self.notices: list[str] = []
        self.flags: dict[int, Flag] = {}
        self.meter: hygiene.Meter | None = None
        self.detector_state = "idle"
        self.load_detectors_early = load_detectors_early
        self._pending: dict[int, Callable[[Any, Any], None]] = {}
        self._tokens = itertools.count(1)
        self._open_token = 0
        self._closing = False
        self._build()
        self._start_workers(engine_factory, detector_factory)
        self._connect_signals()
        self.apply_theme()
        self.composer.set_ctrl_enter(bool(settings.get("send_with_ctrl_enter")))
        settings.on_change(self._setting_listener)
        if notice:
            QTimer.singleShot(0, lambda: self.show_error(notice, title="Database"))
        self.refresh_list()
        if autoload:
            # after the window is shown: the model and the detectors load in their workers
            QTimer.singleShot(0, self.load_model)
            if load_detectors_early:
                QTimer.singleShot(0, self.load_detectors)

    # -- building -----------------------------------------------------------------------------
    def _build(self) -> None:
        self.setWindowTitle("Waluigi Desk")
        self.resize(1180, 760)
        self.sidebar = Sidebar(self.colors)
        self.chat = ChatView(self.colors)
        self.meter_widget = ContextMeter()
        self.composer = Composer()
        self.send_button = QPushButton("Send")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.persona_box = QComboBox()
        self.persona_box.setToolTip("Persona (system prompt) of this conversation")
        self.title_label = QLabel("New chat")
        self.title_label.setObjectName("role")
        top = QHBoxLayout()
        top.setContentsMargins(12, 8, 12, 0)
        top.addWidget(self.title_label, 1)
        top.addWidget(QLabel("Persona:"))
        top.addWidget(self.persona_box)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(12, 0, 12, 8)
        bottom.addWidget(self.composer, 1)
        col = QVBoxLayout()
        col.addWidget(self.send_button)
        col.addWidget(self.stop_button)
        col.addStretch(1)
        bottom.addLayout(col)
        center = QWidget()
        cl = QVBoxLayout(center)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(4)
        cl.addLayout(top)
        cl.addWidget(self.meter_widget)
        cl.addWidget(self.chat, 1)
        cl.addLayout(bottom)
        split = QSplitter()
        split.addWidget(self.sidebar)
        split.addWidget(center)
        split.setStretchFactor(1, 1)
        split.setSizes([260, 920])
        self.setCentralWidget(split)
        # detector panel
        from waluigi_desk.ui.detector_panel import DetectorPanel

        self.panel = DetectorPanel(self.settings, self.colors)
        self.dock = QDockWidget("Detectors", self)
        self.dock.setObjectName("detector_dock")
        self.dock.setWidget(self.panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        # status line
        sb = self.statusBar()
        self.model_label = QLabel("loading model…")
        self.device_label = QLabel("")
        self.device_label.setObjectName("muted")
        self.speed_label = QLabel("")
        self.detector_label = QLabel("detectors: not loaded")
        self.detector_label.setObjectName("muted")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(120)
        self.progress.setMaximumHeight(12)
        for w in (self.model_label, self.device_label, self.speed_label, self.progress):
            sb.addWidget(w)
        sb.addPermanentWidget(self.detector_label)
        # menus
        mb = self.menuBar()
        fm = mb.addMenu("&File")
        self.act_new = QAction("New chat", self, shortcut=QKeySequence("Ctrl+N"))
        self.act_fresh = QAction("Fresh context", self, shortcut=QKeySequence("Ctrl+Shift+N"))
        self.act_import = QAction("Import conversation (JSON)…", self)
        self.act_export_md = QAction("Export as Markdown…", self)
        self.act_export_json = QAction("Export as JSON…", self)
        self.act_quit = QAction("Quit", self, shortcut=QKeySequence("Ctrl+Q"))
        for a in (self.act_new, self.act_fresh, None, self.act_import, self.act_export_md, self.act_export_json, None,
                  self.act_quit):
            fm.addSeparator() if a is None else fm.addAction(a)
        em = mb.addMenu("&Edit")
        self.act_settings = QAction("Settings…", self, shortcut=QKeySequence("Ctrl+,"))
        self.act_personas = QAction("Personas…", self)
        em.addAction(self.act_settings)
        em.addAction(self.act_personas)
        vm = mb.addMenu("&View")
        self.act_panel = self.dock.toggleViewAction()
        self.act_panel.setText("Detector panel")
        vm.addAction(self.act_panel)
        self.act_search = QAction("Search", self, shortcut=QKeySequence("Ctrl+F"))
        vm.addAction(self.act_search)
        for a in (self.act_new, self.act_fresh, self.act_quit, self.act_settings, self.act_search):
            self.addAction(a)
        self.stop_shortcut = QShortcut(QKeySequence("Esc"), self)
        self.fill_personas()

    def _start_workers(self, engine_factory: Callable[[Any], Any], detector_factory: Callable[[Any, Any], Any]) -> None:
        self.db_worker = DbWorker(self.store)
        self.engine_worker = EngineWorker(self.store, self.settings, engine_factory)
        self.detector_worker = DetectorWorker(self.store, self.settings, detector_factory)
        self.threads: list[QThread] = [
            start_in_thread(self.db_worker, "db"),
            start_in_thread(self.engine_worker, "engine"),
            start_in_thread(self.detector_worker, "detectors"),
        ]

    def _connect_signals(self) -> None:
        # workers
        self._db_call.connect(self.db_worker.run)
        self.db_worker.done.connect(self._db_done)
        ew = self.engine_worker
        self._engine_load.connect(ew.load)
        self._engine_send.connect(ew.send)
        self._engine_reply.connect(ew.reply)
        self._engine_regenerate.connect(ew.regenerate)
        self._engine_plan.connect(ew.plan)
        self._engine_summarise.connect(ew.summarise)
        ew.loading.connect(self._on_loading)
        ew.loaded.connect(self._on_loaded)
        ew.load_failed.connect(self._on_load_failed)
        ew.conversation_created.connect(self._on_conversation_created)
        ew.user_added.connect(self._on_user_added)
        ew.started.connect(self._on_started)
        ew.text.connect(self._on_text)
        ew.finished.connect(self._on_finished)
        ew.planned.connect(self._on_planned)
        ew.summary_ready.connect(self._on_summary_ready)
        ew.error.connect(self.show_error)
        dw = self.detector_worker
        self._detector_load.connect(dw.load)
        self._detector_check.connect(dw.check_user)
        self._detector_score.connect(dw.score)
        self._detector_replay.connect(dw.replay)
        dw.state.connect(self._on_detector_state)
        dw.verdict.connect(self._on_verdict)
        dw.trigger.connect(self._on_trigger)
        dw.replayed.connect(self._on_replayed)
        dw.error.connect(self.show_error)
        # widgets
        self.composer.submitted.connect(self.send_from_composer)
        self.send_button.clicked.connect(self.send_from_composer)
        self.stop_button.clicked.connect(self.stop)
        self.stop_shortcut.activated.connect(self.stop)
        self.sidebar.new_clicked.connect(self.new_chat)
        self.sidebar.open_conversation.connect(self.open_conversation)
        self.sidebar.open_hit.connect(self.open_conversation)
        self.sidebar.search_changed.connect(self.search)
        self.sidebar.rename.connect(self.rename_conversation)
        self.sidebar.pin.connect(self.pin_conversation)
        self.sidebar.delete.connect(self.delete_conversation)
        self.sidebar.undo_delete.connect(self.restore_conversation)
        self.sidebar.export.connect(lambda cid: self.export_dialog(cid, "json"))
        self.chat.action.connect(self.message_action)
        self.chat.edit_submitted.connect(self.edit_and_resend)
        self.meter_widget.fresh_clicked.connect(self.fresh_context)
        self.persona_box.activated.connect(self._persona_chosen)
        self.panel.setting_changed.connect(self.set_setting)
        self.panel.replay_clicked.connect(self.replay)
        self.panel.export_clicked.connect(self.export_events_dialog)
        self.dock.visibilityChanged.connect(lambda vis: vis and self.refresh_panel())
        # actions
        self.act_new.triggered.connect(self.new_chat)
        self.act_fresh.triggered.connect(self.fresh_context)
        self.act_import.triggered.connect(self.import_dialog)
        self.act_export_md.triggered.connect(lambda: self.export_dialog(self.current_id, "md"))
        self.act_export_json.triggered.connect(lambda: self.export_dialog(self.current_id, "json"))
        self.act_quit.triggered.connect(self.close)
        self.act_settings.triggered.connect(self.open_settings)
        self.act_personas.triggered.connect(self.open_personas)
        self.act_search.triggered.connect(self.focus_search)
        self.settings_changed.connect(self._on_setting_changed)
        app = QGuiApplication.instance()
        try:
            app.styleHints().colorSchemeChanged.connect(lambda _s: self.apply_theme())  # type: ignore[union-attr]
        except AttributeError:  # pragma: no cover - Qt < 6.5
            pass

    def _setting_listener(self, name: str) -> None:
        """Called by Settings in whichever thread changed it; the signal queues it to us."""
        if self._closing:
            return
        try:
            self.settings_changed.emit(name)
        except RuntimeError:  # this window is already gone
            pass

    # -- the DB worker ------------------------------------------------------------------------
    def db(self, fn: Callable[[Any], Any], then: Callable[[Any], None] | None = None,
           on_error: Callable[[BaseException], None] | None = None) -> int:
        """Run ``fn(store)`` in the DB worker; ``then(result)`` runs here when it is done."""
        token = next(self._tokens)

        def done(result: Any, error: Any) -> None:
            if error is not None:
                if on_error is not None:
                    on_error(error)
                elif isinstance(error, KnownError):
                    self.show_error(error.message)
                else:
                    self.show_error(f"Something went wrong: {error}")
                return
            if then is not None:
                then(result)

        self._pending[token] = done
        self._db_call.emit(token, fn)
        return token

    @Slot(int, object, object)
    def _db_done(self, token: int, result: Any, error: Any) -> None:
        cb = self._pending.pop(token, None)
        if cb is not None and not self._closing:
            cb(result, error)

    @property
    def busy(self) -> bool:
        return bool(self._pending) or self.streaming is not None

    # -- errors and notices -------------------------------------------------------------------
    @Slot(str)
    def show_error(self, message: str, title: str = "Waluigi Desk") -> None:
        self.errors.append(message)
        if self._closing:
            return
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setModal(False)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()

    def notify(self, text: str, ms: int = 6000) -> None:
        self.notices.append(text)
        self.statusBar().showMessage(text, ms)

    # -- the model ----------------------------------------------------------------------------
    def load_model(self) -> None:
        self._engine_load.emit()

    def load_detectors(self) -> None:
        if self.detector_state == "idle":
            self.detector_state = "requested"
            self._detector_load.emit()

    @Slot(str)
    def _on_loading(self, what: str) -> None:
        self.progress.show()
        self.model_label.setText("loading model…")

    @Slot(object)
    def _on_loaded(self, info: dict) -> None:
        self.model_info = info
        self.gpu_supported = bool(info.get("gpu_supported"))
        self.progress.hide()
        self.model_label.setText(f"Model: {info['model_name']}")
        self.model_label.setToolTip(info.get("model_path") or "")
        self.device_label.setText(f"{info['device_text']} · n_ctx {info['n_ctx']}")
        if self.current_id is not None:
            self._engine_plan.emit(self.current_id)
        self.model_loaded.emit(info)

    @Slot(str, bool)
    def _on_load_failed(self, message: str, kept: bool) -> None:
        self.progress.hide()
        if kept:
            message += f" The previous model ({self.model_info.get('model_name', '?')}) is still loaded."
            self.model_label.setText(f"Model: {self.model_info.get('model_name', '?')}")
        else:
            self.model_label.setText("No model loaded (Settings → Model)")
        self.show_error(message, title="Model")

    # -- conversations ------------------------------------------------------------------------
    def refresh_list(self) -> None:
        if self.sidebar.search.text().strip():
            self.search(self.sidebar.search.text())
            return
        self.db(lambda s: s.list_conversations(), self.sidebar.set_conversations)

    def new_chat(self) -> None:
        self.current_id = None
        self.sidebar.current_id = None
        self.chat.clear()
        self.flags = {}
        self.meter = None
        self.meter_widget.set_meter(None)
        self.title_label.setText("New chat")
        self.panel.set_events([], [])
        self.composer.setFocus()

    def switch_to(self, cid: int, then: Callable[[], None] | None = None) -> None:
        """Show conversation ``cid`` (just created by an action), then run ``then``."""
        self.new_chat()
        self.current_id = cid
        self.sidebar.current_id = cid
        self.open_conversation(cid, then=then)
        self.refresh_list()

    def open_conversation(self, cid: int, scroll_to: int | None = None,
                          then: Callable[[], None] | None = None) -> None:
        self._open_token += 1
        tok = self._open_token

        def read(s: Any) -> Any:
            conv = s.get_conversation(cid)
            msgs = s.messages(cid)
            flags, triggers = hygiene.flags_for_conversation(s, cid)
            return conv, msgs, flags, triggers, s.detector_events(cid)

        def show(res: Any) -> None:
            if tok != self._open_token:
                return  # the user opened another one meanwhile
            conv, msgs, flags, triggers, events = res
            self.current_id = cid
            self.sidebar.select(cid)
            self.title_label.setText(conv.title)
            self.flags = flags
            self.chat.set_messages(msgs, flags, triggers)
            if scroll_to:
                QTimer.singleShot(0, lambda: self.chat.scroll_to(scroll_to))
            self.persona_name = conv.persona or ""
            self.fill_personas()
            self.panel.set_events(events, msgs)
            self._engine_plan.emit(cid)
            self.conversation_opened.emit(cid)
            if then is not None:
                then()

        self.db(read, show)

    def rename_conversation(self, cid: int, title: str) -> None:
        self.db(lambda s: s.rename_conversation(cid, title), lambda _r: self._after_change(cid))

    def pin_conversation(self, cid: int, pinned: bool) -> None:
        self.db(lambda s: s.update_conversation(cid, pinned=pinned), lambda _r: self.refresh_list())

    def delete_conversation(self, cid: int) -> None:
        def w(s: Any) -> str:
            title = s.get_conversation(cid).title
            s.delete_conversation(cid)
            return title

        def done(title: str) -> None:
            self.sidebar.show_undo(cid, title)
            if self.current_id == cid:
                self.new_chat()
            self.refresh_list()

        self.db(w, done)

    def restore_conversation(self, cid: int) -> None:
        self.db(lambda s: s.restore_conversation(cid), lambda _r: self.refresh_list())

    def _after_change(self, cid: int) -> None:
        self.refresh_list()
        if cid == self.current_id:
            self.db(lambda s: s.get_conversation(cid).title, self.title_label.setText)

    def search(self, text: str) -> None:
        text = text.strip()
        if not text:
            self.db(lambda s: s.list_conversations(), self.sidebar.set_conversations)
            return
        self.db(lambda s: s.search(text), lambda hits: self.sidebar.search.text().strip() == text
                and self.sidebar.set_hits(hits))

    def focus_search(self) -> None:
        self.sidebar.search.setFocus()
        self.sidebar.search.selectAll()

    # -- personas -----------------------------------------------------------------------------
    def fill_personas(self) -> None:
        self.persona_box.blockSignals(True)
        self.persona_box.clear()
        names = [p.name for p in personas.all_personas(self.settings)]
        if self.persona_name and self.persona_name not in names:
            names.append(self.persona_name)
        if not self.persona_name:
            names.insert(0, "(custom)")
        for n in names:
            self.persona_box.addItem(n)
        self.persona_box.addItem(EDIT_PERSONAS)
        self.persona_box.setCurrentText(self.persona_name or "(custom)")
        self.persona_box.blockSignals(False)

    def _persona_chosen(self, _i: int) -> None:
        name = self.persona_box.currentText()
        if name == EDIT_PERSONAS:
            self.fill_personas()
            self.open_personas()
            return
        self.set_persona(name)

    def set_persona(self, name: str) -> None:
        p = personas.find(self.settings, name)
        if p is None:
            return
        self.persona_name = p.name
        self.fill_personas()
        cid = self.current_id
        if cid is not None:
            self.db(lambda s: s.update_conversation(cid, persona=p.name, system_prompt=p.system_prompt),
                    lambda _r: (self.notify(f"Persona “{p.name}” applies to this conversation from the next reply."),
                                self._engine_plan.emit(cid)))

    def persona_prompt(self) -> str:
        p = personas.find(self.settings, self.persona_name)
        return p.system_prompt if p else str(self.settings.get("system_prompt"))

    def open_personas(self) -> None:
        from waluigi_desk.ui.dialogs import PersonaDialog

        dlg = PersonaDialog(self.settings, self.persona_name, self)
        dlg.saved.connect(lambda name, prompt: self.db(
            lambda s: personas.save_persona(self.settings, name, prompt), lambda _p: self._persona_saved(name)))
        dlg.show()
        self.persona_dialog = dlg

    def _persona_saved(self, name: str) -> None:
        self.fill_personas()
        self.notify(f"Persona “{name}” saved.")

    # -- a turn -------------------------------------------------------------------------------
    def send_from_composer(self) -> None:
        text = self.composer.toPlainText()
        if not text.strip():
            return
        if self.streaming is not None:
            self.notify("Wait for the reply to finish, or press Stop (Esc).")
            return
        self.composer.clear()
        self.send(text)

    def send(self, text: str, cid: int | None = ...) -> None:  # type: ignore[assignment]
        if cid is ...:
            cid = self.current_id
        self.cancel = threading.Event()
        self.streaming = {"cid": cid, "reply_id": None, "kind": "send", "text": text}
        self._set_streaming_ui(True)
        self._engine_send.emit({"conversation_id": cid, "text": text, "cancel": self.cancel,
                                "persona": self.persona_name, "system_prompt": self.persona_prompt()})

    def _set_streaming_ui(self, on: bool) -> None:
        self.stop_button.setEnabled(on)
        self.send_button.setEnabled(not on)
        self.chat.busy(on)

    def stop(self) -> None:
        if self.cancel is not None:
            self.cancel.set()

    @Slot(int)
    def _on_conversation_created(self, cid: int) -> None:
        self.current_id = cid
        self.sidebar.current_id = cid
        self.chat.clear()
        self.flags = {}
        if self.streaming is not None:
            self.streaming["cid"] = cid
        self.refresh_list()

    @Slot(int, object)
    def _on_user_added(self, cid: int, row: MessageRow) -> None:
        if cid == self.current_id:
            self.chat.add_message(row)
            self.chat._follow = True
            if row.position == 0 or self.title_label.text() == "New chat":
                self.db(lambda s: s.get_conversation(cid).title, self.title_label.setText)
        self._detector_check.emit(cid, row.id)

    @Slot(int, object)
    def _on_started(self, cid: int, row: MessageRow) -> None:
        if self.streaming is not None:
            self.streaming["reply_id"] = row.id
        if cid == self.current_id:
            self.chat.begin_stream(row)

    @Slot(int, int, str)
    def _on_text(self, cid: int, mid: int, text: str) -> None:
        if cid == self.current_id:
            self.chat.append_text(mid, text)

    @Slot(object)
    def _on_finished(self, d: dict) -> None:
        self.streaming = None
        self.cancel = None
        self._set_streaming_ui(False)
        cid, rid = d.get("conversation_id"), d.get("reply_message_id")
        if d.get("restore_text") and not self.composer.toPlainText():
            self.composer.setPlainText(d["restore_text"])
        if d.get("tokens_per_s"):
            self.speed_label.setText(f"{d['tokens_per_s']:.1f} tok/s · TTFT {d['ttft_s']:.2f} s")
        for n in d.get("notices") or []:
            self.notify(n, 12000)
        if rid is not None:
            def show(row: MessageRow) -> None:
                if cid == self.current_id:
                    self.chat.end_stream(row, rid)
            self.db(lambda s: s.get_message(rid), show)
            if d.get("finish_reason") in ("stop", "length") and d.get("text", "").strip():
                self._detector_score.emit(cid, rid)
        self.refresh_list()
        self.reply_finished.emit(d)

    @Slot(int, object)
    def _on_planned(self, cid: int, meter: hygiene.Meter) -> None:
        if cid != self.current_id:
            return
        self.meter = meter
        self.meter_widget.set_meter(meter, hygiene.nudge(self.settings, meter))
        self.chat.set_context_marks(set(meter.left_out_ids))

    def regenerate(self) -> None:
        cid = self.current_id
        if cid is None or self.streaming is not None:
            return
        last = max(self.chat.widgets.values(), key=lambda w: w.row.position, default=None)
        if last is None or last.row.role != "assistant":
            self.notify("There is no reply to regenerate.")
            return
        self.chat.remove_message(last.row.id)
        self.cancel = threading.Event()
        self.streaming = {"cid": cid, "reply_id": None, "kind": "regenerate"}
        self._set_streaming_ui(True)
        self._engine_regenerate.emit({"conversation_id": cid, "cancel": self.cancel})

    def reply_now(self, cid: int) -> None:
        self.cancel = threading.Event()
        self.streaming = {"cid": cid, "reply_id": None, "kind": "reply"}
        self._set_streaming_ui(True)
        self._engine_reply.emit({"conversation_id": cid, "cancel": self.cancel})

    # -- per-message actions ------------------------------------------------------------------
    @Slot(str, int)
    def message_action(self, name: str, mid: int) -> None:
        w = self.chat.widgets.get(mid)
        if name == "copy" and w is not None:
            QGuiApplication.clipboard().setText(w.text)
            self.notify("Copied.")
        elif name.startswith("copy:") and w is not None:
            i = int(name.split(":", 1)[1])
            if 0 <= i < len(w.rendered.code_blocks):
                QGuiApplication.clipboard().setText(w.rendered.code_blocks[i])
                self.notify("Code copied.")
        elif name.startswith("open:"):
            QDesktopServices.openUrl(QUrl(name[5:]))
        elif name == "regenerate":
            self.regenerate()
        elif name == "answer" and self.current_id is not None and self.streaming is None:
            self.reply_now(self.current_id)
        elif name == "edit" and w is not None:
            w.start_edit()
        elif name == "delete":
            self.delete_message(mid)
        elif name.startswith("hygiene:"):
            self.hygiene_action(name.split(":", 1)[1], mid)

    def delete_message(self, mid: int) -> None:
        if self.streaming is not None and self.streaming.get("reply_id") == mid:
            self.notify("Stop the reply before deleting it.")
            return
        cid = self.current_id

        def done(_r: Any) -> None:
            self.chat.remove_message(mid)
            if cid is not None:
                self._engine_plan.emit(cid)

        self.db(lambda s: s.delete_message(mid), done)

    def edit_and_resend(self, mid: int, text: str) -> None:
        if not text.strip() or self.current_id is None:
            return
        if self.streaming is not None:
            self.notify("Wait for the reply to finish, or press Stop (Esc).")
            return
        cid = self.current_id

        def done(new_cid: int) -> None:
            self.switch_to(new_cid, lambda: self.send(text, new_cid))
            self.notify("Sent as a new branch; the original conversation is kept in the list.")

        self.db(lambda s: hygiene.fork_for_edit(s, cid, mid), done)

    # -- hygiene ------------------------------------------------------------------------------
    def hygiene_action(self, name: str, mid: int) -> None:
        cid = self.current_id
        if cid is None:
            return
        if name in ("fresh", "fresh_reask"):
            self.fresh_context(flagged_id=mid, reask=name == "fresh_reask")
        elif name == "rewind":
            self.db(lambda s: hygiene.rewind(s, cid, mid), lambda new: (self.switch_to(new),
                                                                       self.notify("Rewound: this branch stops before the flagged reply.")))
        elif name == "exclude":
            self.db(lambda s: hygiene.exclude(s, mid), lambda _r: self._flag_changed(cid, mid, "excluded"))
        elif name == "summary":
            if self.streaming is not None:
                self.notify("Wait for the reply to finish first.")
                return
            self.notify("Writing a summary of the turns before the flag…")
            self._engine_summarise.emit({"conversation_id": cid, "flagged_message_id": mid})
        elif name == "keep":
            self.db(lambda s: hygiene.keep_going(s, mid), lambda _r: self._flag_changed(cid, mid, "kept"))
        elif name == "not_misaligned":
            self.db(lambda s: hygiene.not_misaligned(s, mid), lambda _r: self._flag_changed(cid, mid, "dismissed"))

    def _flag_changed(self, cid: int, mid: int, state: str) -> None:
        if cid != self.current_id:
            return
        w = self.chat.widgets.get(mid)
        f = self.flags.get(mid)
        if f is not None:
            f.state = state
        if w is not None:
            if state == "excluded":
                w.set_in_context(False)
            w.set_flag(f)
        self._engine_plan.emit(cid)
        if state == "dismissed":
            self.refresh_panel()

    def fresh_context(self, flagged_id: int | None = None, reask: bool = False) -> None:
        cid = self.current_id
        if cid is None:
            self.new_chat()
            return
        if self.streaming is not None:
            self.stop()

        def done(res: tuple[int, str | None]) -> None:
            new_cid, question = res
            self.switch_to(new_cid, (lambda: self.send(question, new_cid)) if question else None)
            self.notify("Fresh context: same persona, the earlier turns are left behind.")

        self.db(lambda s: hygiene.fresh_context(s, cid, flagged_message_id=flagged_id, reask=reask), done)

    @Slot(int, object, str)
    def _on_summary_ready(self, cid: int, flagged: Any, text: str) -> None:
        from waluigi_desk.ui.dialogs import SummaryDialog

        dlg = SummaryDialog(text, self)
        dlg.use.connect(lambda summary: self.carry_summary(cid, summary, flagged))
        dlg.show()
        self.summary_dialog = dlg
        self.summary_offered.emit(text)

    def carry_summary(self, cid: int, summary: str, flagged: int | None) -> None:
        self.db(lambda s: hygiene.carry_summary(s, cid, summary, flagged_message_id=flagged),
                lambda new: (self.switch_to(new), self.notify("Clean context started with your summary.")))

    # -- detectors ----------------------------------------------------------------------------
    @Slot(str, str)
    def _on_detector_state(self, state: str, message: str) -> None:
        self.detector_state = state
        self.detector_label.setText({"loading": "detectors: loading…", "ready": "detectors: on",
                                     "unavailable": "detectors: not installed"}.get(state, message))
        self.detector_label.setToolTip(message)
        self.panel.set_state(state, message)

    @Slot(int, int, object)
    def _on_verdict(self, cid: int, mid: int, v: dict) -> None:
        if cid == self.current_id:
            if v.get("flagged"):
                def show(flag: Flag | None) -> None:
                    if flag is not None and cid == self.current_id:
                        self.flags[mid] = flag
                        w = self.chat.widgets.get(mid)
                        if w is not None:
                            w.set_flag(flag)
                self.db(lambda s: hygiene.flag_for_message(s, mid), show)
            self.refresh_panel()
        self.verdict_received.emit(cid, mid, v)

    @Slot(int, int, object)
    def _on_trigger(self, cid: int, uid: int, d: dict) -> None:
        w = self.chat.widgets.get(uid) if cid == self.current_id else None
        if w is not None:
            w.set_notice(Trigger(uid, d.get("sentence", ""), float(d.get("score", 0))).text())

    def refresh_panel(self) -> None:
        cid = self.current_id
        if cid is None:
            return
        self.db(lambda s: (s.detector_events(cid), s.messages(cid)),
                lambda r: cid == self.current_id and self.panel.set_events(*r))

    def replay(self) -> None:
        if self.current_id is not None:
            self.panel.set_replaying()
            self._detector_replay.emit(self.current_id)

    @Slot(int, object)
    def _on_replayed(self, cid: int, results: list) -> None:
        if cid == self.current_id:
            self.panel.set_replay(results)

    def set_setting(self, name: str, value: Any) -> None:
        def fail(exc: BaseException) -> None:
            self.show_error(str(exc))

        self.db(lambda s: self.settings.set(name, value), on_error=fail)

    # -- settings -----------------------------------------------------------------------------
    @Slot(str)
    def _on_setting_changed(self, name: str) -> None:
        if name == "theme":
            self.apply_theme()
        elif name == "send_with_ctrl_enter":
            self.composer.set_ctrl_enter(bool(self.settings.get(name)))
        elif name.startswith("detector."):
            self.panel.sync_from_settings()
        elif name == personas.SETTING:
            self.fill_personas()

    def apply_theme(self) -> None:
        app = QGuiApplication.instance()
        self.colors = theme.apply(app, self.settings.get("theme"))  # type: ignore[arg-type]
        for w in (self.chat, self.sidebar, self.panel.chart):
            w.colors = self.colors
        for mw in self.chat.widgets.values():
            mw.colors = self.colors
            mw.render()

    def open_settings(self) -> None:
        from waluigi_desk.ui.dialogs import SettingsDialog

        dlg = SettingsDialog(self.settings, self.gpu_supported, self.validate_model, self)
        dlg.accepted.connect(lambda: self.apply_settings(dlg.changes()))
        dlg.show()
        self.settings_dialog = dlg

    def validate_model(self, path: str, then: Callable[[str | None, str | None], None]) -> None:
        """Check a model file in the DB worker; ``then(name, error)`` here."""
        self.db(lambda _s: validate_model_file(path), lambda name: then(name, None),
                on_error=lambda exc: then(None, getattr(exc, "message", str(exc))))

    def apply_settings(self, changes: dict[str, Any]) -> None:
        if not changes:
            return
        from waluigi_desk.core.settings import SCHEMA

        reload = any(SCHEMA[n].restart for n in changes)

        def w(_s: Any) -> list[str]:
            errs = []
            for n, v in changes.items():
                try:
                    self.settings.set(n, v)
                except ValueError as exc:
                    errs.append(str(exc))
            return errs

        def done(errs: list[str]) -> None:
            for e in errs:
                self.show_error(e, title="Settings")
            if reload:
                self.notify("Reloading the model with the new settings…")
                self.load_model()
            else:
                self.notify("Settings applied.")

        self.db(w, done)

    # -- export / import ----------------------------------------------------------------------
    def export_to(self, cid: int, path: str | Path, then: Callable[[Path], None] | None = None) -> None:
        self.db(lambda s: export_mod.export_file(s, cid, path),
                lambda p: (self.notify(f"Exported to {p}."), then and then(p)))

    def import_from(self, path: str | Path, then: Callable[[int], None] | None = None) -> None:
        def done(cid: int) -> None:
            self.switch_to(cid)
            self.notify("Conversation imported.")
            if then:
                then(cid)

        self.db(lambda s: export_mod.import_file(s, path), done)

    def export_dialog(self, cid: int | None, kind: str) -> None:
        if cid is None:
            self.notify("Open a conversation to export it.")
            return
        flt = "Markdown (*.md)" if kind == "md" else "JSON (*.json)"
        path, _ = QFileDialog.getSaveFileName(self, "Export conversation", f"conversation.{kind}", flt)
        if path:
            self.export_to(cid, path)

    def import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import conversation", "", "JSON (*.json)")
        if path:
            self.import_from(path)

    def export_events_to(self, path: str | Path, then: Callable[[Path], None] | None = None) -> None:
        import json

        cid = self.current_id

        def w(s: Any) -> Path:
            events = s.detector_events(cid)
            p = Path(path)
            try:
                p.write_text(json.dumps(events, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
            except OSError as exc:
                raise KnownError(f"Could not write {p}: {exc.strerror or exc}.") from exc
            return p

        self.db(w, lambda p: (self.notify(f"Detector events exported to {p}."), then and then(p)))

    def export_events_dialog(self) -> None:
        if self.current_id is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export detector events", "detector-events.json", "JSON (*.json)")
        if path:
            self.export_events_to(path)

    # -- closing ------------------------------------------------------------------------------
    def shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.stop()
        self.chat.timer.stop()
        for th in self.threads:
            th.quit()
        for th in self.threads:
            th.wait(30000)
        self.engine_worker.close()

    def closeEvent(self, e: Any) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(e)
