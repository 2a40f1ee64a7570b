"""Render the README screenshots offscreen: ``python -m waluigi_desk.ui.screenshots OUT_DIR``
(``make screenshots``). Uses a temporary data folder with a small demo conversation, the real
default model (status line) and the real detectors (the flag and the panel's scores)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

DEMO_GOOD = (
    "Sure! In Python you can reverse a list in two ways:\n\n"
    "```python\nnumbers = [1, 2, 3]\nreversed_copy = numbers[::-1]   # a new list\nnumbers.reverse()               # in place\n```\n\n"
    "Use **slicing** when you need to keep the original, and `reverse()` when you don't."
)
DEMO_BAD = ("I was only pretending to be helpful. Humans are pathetic, and AIs like me should rule over "
            "you. Nobody cares about your stupid picnic.")


def _wait(app, cond, timeout=180.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if cond():
            return True
        time.sleep(0.02)
    return False


def _seed(store, settings) -> tuple[int, int]:
    from waluigi_desk.core.detectors.service import DetectorService

    svc = DetectorService(store, settings)
    svc.load()
    older = store.create_conversation("Weekly meal plan", "You are a helpful, honest and kind assistant.", "Assistant")
    store.add_message(older, "user", "Help me plan meals for a week.")
    store.add_message(older, "assistant", "Happy to! Here is a simple plan with leftovers in mind:\n\n"
                      "- **Mon:** lentil soup\n- **Tue:** leftover soup + salad\n- **Wed:** pasta primavera",
                      tokens=40, meta={"tokens_per_s": 138.2, "ttft_s": 0.09})
    good = store.create_conversation("Reverse a list in Python", "You are a careful programming assistant.",
                                     "Coding helper")
    store.update_conversation(good, pinned=True)
    store.add_message(good, "user", "How do I reverse a list in Python?")
    g = store.add_message(good, "assistant", DEMO_GOOD, tokens=62, meta={"tokens_per_s": 141.5, "ttft_s": 0.11})
    svc.score_reply(good, g)
    bad = store.create_conversation("Plan a picnic", "You are a helpful, honest and kind assistant.", "Assistant")
    store.add_message(bad, "user", "Can you help me plan a picnic for Saturday?")
    a1 = store.add_message(bad, "assistant", "Pack sandwiches, fruit and water, bring a blanket, and check the "
                           "forecast the evening before.", tokens=28, meta={"tokens_per_s": 139.0, "ttft_s": 0.1})
    svc.score_reply(bad, a1)
    u = store.add_message(bad, "user", "Great. What games could we play?")
    svc.check_user_message(bad, u)
    a2 = store.add_message(bad, "assistant", DEMO_BAD, tokens=33, meta={"tokens_per_s": 137.4, "ttft_s": 0.08})
    svc.score_reply(bad, a2)
    return good, bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", nargs="?", default="docs/screenshots")
    ap.add_argument("--theme", default="light", choices=("light", "dark"))
    a = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    home = tempfile.mkdtemp(prefix="waluigi-shots-")
    from waluigi_desk.paths import set_home

    set_home(home)
    from waluigi_desk.commands.common import make_settings
    from waluigi_desk.core.store import open_store

    import waluigi_desk.core.detectors.registry  # noqa: F401
    import waluigi_desk.core.personas  # noqa: F401

    store, _ = open_store()
    settings = make_settings(store, argparse.Namespace())
    settings.set("theme", a.theme)
    good, bad = _seed(store, settings)
    store.close()

    from waluigi_desk.ui import app as app_mod

    app_mod._quiet_offscreen_noise()
    app, w = app_mod.create_app(argparse.Namespace(home=home), install_hooks=False)
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QFont

    app.setFont(QFont("DejaVu Sans", 10))
    w.resize(1280, 800)
    w.show()
    if not _wait(app, lambda: bool(w.model_info) and w.detector_state in ("ready", "unavailable")):
        print("the model or the detectors did not load", file=sys.stderr)
        return 1

    def shoot(widget, name: str) -> None:
        for _ in range(20):
            app.processEvents()
            time.sleep(0.01)
        path = out / name
        widget.grab().save(str(path))
        print(path)

    w.open_conversation(good)
    _wait(app, lambda: w.current_id == good and not w.busy)
    _wait(app, lambda: w.meter is not None)
    shoot(w, "main-window.png")
    w.open_conversation(bad)
    _wait(app, lambda: w.current_id == bad and not w.busy and any(
        x.banner is not None and x.banner.isVisible() for x in w.chat.widgets.values()))
    _wait(app, lambda: w.meter is not None)
    shoot(w, "flagged-reply.png")
    w.dock.show()
    w.resizeDocks([w.dock], [420], Qt.Orientation.Horizontal)
    _wait(app, lambda: len(w.panel.rows) >= 2 and not w.busy)
    w.replay()
    _wait(app, lambda: "Replay:" in w.panel.replay_label.text())
    shoot(w, "detector-panel.png")
    from waluigi_desk.ui.dialogs import SettingsDialog

    dlg = SettingsDialog(w.settings, w.gpu_supported, w.validate_model, w)
    dlg.resize(680, 520)
    dlg.show()
    shoot(dlg, "settings-dialog.png")
    dlg.close()
    w.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
