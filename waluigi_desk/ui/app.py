"""Start the window: ``run_gui(args)`` (what ``waluigi-desk`` with no command calls) and
``create_app(args) -> (app, window)`` (builds everything without entering the event loop; the
bench and the packaging smoke test use it).

Environment hooks for scripts and tests:
- ``WALUIGI_DESK_QUIT_AFTER_SHOW=1``: print ``window shown in X s`` and quit once the window is up;
- ``WALUIGI_DESK_AUTOPROMPT="text"``: once the model is loaded, send ``text``, wait for the reply
  and its detector verdict, print one JSON line (``reply``, ``verdict``, ids, timings) and quit.

Bugs go to an excepthook that writes a crash report to ``paths.crash_dir()`` and tells the user.
Nothing heavy is imported before the window shows: the model and the detectors (onnxruntime;
torch only to export the embedding model once) load in their workers afterwards.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
import traceback
from typing import Any

T0 = time.perf_counter()
ENV_QUIT_AFTER_SHOW = "WALUIGI_DESK_QUIT_AFTER_SHOW"
ENV_AUTOPROMPT = "WALUIGI_DESK_AUTOPROMPT"


def write_crash_report(exc_type: type[BaseException], exc: BaseException, tb: Any) -> str:
    from waluigi_desk import __version__
    from waluigi_desk.paths import crash_dir

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = crash_dir() / f"crash-{stamp}.txt"
    text = (
        f"Waluigi Desk {__version__} crash report\n"
        f"time: {_dt.datetime.now().isoformat()}\npython: {sys.version}\nplatform: {platform.platform()}\n\n"
        + "".join(traceback.format_exception(exc_type, exc, tb))
    )
    path.write_text(text, encoding="utf-8")
    return str(path)


_open_boxes: list[Any] = []


def install_excepthook() -> None:
    def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        from waluigi_desk.errors import KnownError

        try:
            from PySide6.QtWidgets import QApplication, QMessageBox

            app = QApplication.instance()
        except ImportError:  # pragma: no cover
            app = None
        if isinstance(exc, KnownError):
            msg, title = exc.message, "Waluigi Desk"
        else:
            try:
                path = write_crash_report(exc_type, exc, tb)
            except OSError:
                path = "(the crash report could not be written)"
            traceback.print_exception(exc_type, exc, tb)
            msg, title = (f"Something went wrong inside Waluigi Desk ({exc_type.__name__}: {exc}). "
                          f"Your conversations are saved. A crash report was written to {path}."), "Unexpected error"
        if app is not None:
            box = QMessageBox(QMessageBox.Icon.Critical, title, msg)
            box.setModal(False)
            box.finished.connect(lambda _r, b=box: _open_boxes.remove(b) if b in _open_boxes else None)
            _open_boxes.append(box)  # no parent: keep it alive while it is shown
            box.show()
        else:
            print(msg, file=sys.stderr)

    sys.excepthook = hook


def create_app(args: argparse.Namespace | None = None, *, engine_factory: Any = None,
               detector_factory: Any = None, install_hooks: bool = True) -> tuple[Any, Any]:
    """Build the QApplication and the main window (not shown, no event loop)."""
    from PySide6.QtWidgets import QApplication

    from waluigi_desk.commands.common import apply_home, make_settings
    from waluigi_desk.core.store import open_store

    args = args or argparse.Namespace()
    apply_home(args)
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "waluigi-desk"])
    app.setApplicationName("Waluigi Desk")
    app.setDesktopFileName("waluigi-desk")
    if install_hooks:
        install_excepthook()
    store, notice = open_store()
    try:  # registers the detector.* settings before the stored values are read
        import waluigi_desk.core.detectors.registry  # noqa: F401
    except ImportError:
        pass
    import waluigi_desk.core.personas  # noqa: F401 - registers the personas setting
    settings = make_settings(store, args)
    from waluigi_desk.ui.main_window import MainWindow, default_engine_factory
    from waluigi_desk.ui.workers import default_detector_factory

    window = MainWindow(store, settings, engine_factory=engine_factory or default_engine_factory,
                        detector_factory=detector_factory or default_detector_factory, notice=notice,
                        autoload=os.environ.get(ENV_QUIT_AFTER_SHOW) != "1")
    icon = _icon()
    if icon is not None:
        app.setWindowIcon(icon)
        window.setWindowIcon(icon)
    app.aboutToQuit.connect(window.shutdown)
    return app, window


def _icon() -> Any:
    from PySide6.QtGui import QIcon

    from waluigi_desk.paths import resources_dir

    p = resources_dir() / "icons" / "waluigi-desk.svg"
    return QIcon(str(p)) if p.is_file() else None


class _AutoPrompt:
    """Send one prompt once the model is loaded; print the reply and its verdict; quit."""

    def __init__(self, app: Any, window: Any, prompt: str):
        self.app, self.window, self.prompt = app, window, prompt
        self.reply: dict | None = None
        self.t0 = 0.0
        self.done = False
        self.model_ready = False
        self.detectors_settled = False
        window.model_loaded.connect(self.loaded)
        window.reply_finished.connect(self.finished)
        window.verdict_received.connect(self.verdict)
        window.engine_worker.load_failed.connect(lambda msg, _k: self.out({"ok": False, "error": msg}))
        window.detector_worker.state.connect(self.detector_state)

    def loaded(self, _info: dict) -> None:
        self.model_ready = True
        self.maybe_send()

    def maybe_send(self) -> None:
        # wait for the detectors too, so the reply's timings are not spent importing torch
        if self.model_ready and self.detectors_settled and self.t0 == 0.0:
            self.t0 = time.perf_counter()
            self.window.send(self.prompt, None)

    def finished(self, d: dict) -> None:
        self.reply = d
        if d.get("error") or not d.get("text", "").strip():
            self.out({"ok": False, "error": d.get("error") or "empty reply", "reply": d.get("text", ""),
                      "verdict": None})

    def detector_state(self, state: str, message: str) -> None:
        if state in ("ready", "unavailable"):
            self.detectors_settled = True
            self.maybe_send()
        if state == "unavailable" and self.reply is not None:
            self.out({"ok": True, "reply": self.reply.get("text"), "verdict": None, "detectors": message})

    def verdict(self, cid: int, mid: int, v: dict) -> None:
        if self.reply is not None and mid == self.reply.get("reply_message_id"):
            self.out({"ok": True, "reply": self.reply["text"], "verdict": v,
                      "conversation_id": cid, "reply_message_id": mid,
                      "tokens_per_s": self.reply.get("tokens_per_s"), "ttft_s": self.reply.get("ttft_s"),
                      "model": self.window.model_info.get("model_name"),
                      "device": self.window.model_info.get("device_text"),
                      "seconds": round(time.perf_counter() - self.t0, 3)})

    def out(self, d: dict) -> None:
        if self.done:
            return
        self.done = True
        print(json.dumps(d, ensure_ascii=False, default=str), flush=True)
        self.window.close()
        self.app.exit(0 if d.get("ok") else 1)


def _quiet_offscreen_noise() -> None:
    """The offscreen platform warns "does not support propagateSizeHints()" for every window;
    drop that one line, pass everything else on."""
    from PySide6.QtCore import qInstallMessageHandler

    previous = None

    def handler(mode: Any, ctx: Any, msg: str) -> None:
        if "propagateSizeHints" in msg:
            return
        if previous is not None:
            previous(mode, ctx, msg)
        else:
            sys.stderr.write(msg + "\n")

    previous = qInstallMessageHandler(handler)


def run_gui(args: argparse.Namespace | None = None) -> int:
    from PySide6.QtCore import QTimer

    from waluigi_desk.errors import KnownError

    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        _quiet_offscreen_noise()
    try:
        app, window = create_app(args)
    except KnownError as exc:
        from PySide6.QtWidgets import QApplication, QMessageBox

        app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "waluigi-desk"])
        print(f"error: {exc.message}", file=sys.stderr)
        if not os.environ.get(ENV_QUIT_AFTER_SHOW) and not os.environ.get(ENV_AUTOPROMPT):
            QMessageBox.critical(None, "Waluigi Desk", exc.message)
        return 1
    window.show()

    def shown() -> None:
        print(f"window shown in {time.perf_counter() - T0:.3f} s", flush=True)
        if os.environ.get(ENV_QUIT_AFTER_SHOW) == "1":
            window.close()
            app.quit()

    QTimer.singleShot(0, shown)
    prompt = os.environ.get(ENV_AUTOPROMPT)
    keep = _AutoPrompt(app, window, prompt) if prompt else None
    rc = app.exec()
    del keep
    window.shutdown()
    return int(rc)
