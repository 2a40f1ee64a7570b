"""Settings dialog (from the schema; model validated on choice; apply without restart, reload for
restart settings), persona editor with lint, detector panel (switches, thresholds, chart, replay,
export), theme, crash hook."""

from __future__ import annotations

import json

from tests.ui.conftest import WALUIGI_REPLY, send


def test_settings_dialog_is_built_from_the_schema(qtbot, make_window):
    from waluigi_desk.core.settings import SCHEMA
    from waluigi_desk.ui.dialogs import HIDDEN_GROUPS, SettingsDialog

    w = make_window()
    dlg = SettingsDialog(w.settings, False, w.validate_model, w)
    qtbot.addWidget(dlg)
    assert set(dlg.fields) == {n for n, s in SCHEMA.items() if s.group not in HIDDEN_GROUPS}
    assert "no GPU support" in dlg.gpu_label.text()
    assert dlg.changes() == {}
    tabs = [dlg.tabs.tabText(i) for i in range(dlg.tabs.count())]
    assert {"Model", "Sampling", "Chat", "Hygiene", "Data"} <= set(tabs)


def test_bad_model_choice_gets_a_dialog_and_keeps_the_previous(qtbot, make_window, tmp_path, settings):
    from waluigi_desk.ui.dialogs import SettingsDialog

    w = make_window()
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 100)
    dlg = SettingsDialog(w.settings, False, w.validate_model, w)
    qtbot.addWidget(dlg)
    with qtbot.waitSignal(dlg.model_checked, timeout=5000) as blocker:
        dlg.choose_model(str(bad))
    ok, msg = blocker.args
    assert not ok and "not-a-model.gguf" in msg and "not a GGUF model file" in msg
    assert dlg.value("model_path") == ""  # previous kept
    assert "Kept the previous model" in dlg.model_status.text()
    assert dlg.changes() == {}


def test_good_model_choice_reloads_the_model(qtbot, make_window, default_model_path, settings):
    from waluigi_desk.core.engine.scripted import ScriptedEngine
    from waluigi_desk.ui.dialogs import SettingsDialog

    loads = []

    def factory(s):
        loads.append(s.get("model_path"))
        return ScriptedEngine(["hi"])

    w = make_window(engine_factory=factory)
    assert loads == [""]
    dlg = SettingsDialog(w.settings, False, w.validate_model, w)
    qtbot.addWidget(dlg)
    with qtbot.waitSignal(dlg.model_checked, timeout=10000) as blocker:
        dlg.choose_model(str(default_model_path))
    assert blocker.args[0] is True
    dlg.set_value("temperature", 0.2)
    changes = dlg.changes()
    assert set(changes) == {"model_path", "temperature"}
    with qtbot.waitSignal(w.model_loaded, timeout=10000):
        w.apply_settings(changes)
    assert loads == ["", str(default_model_path)]
    assert settings.get("temperature") == 0.2


def test_sampling_change_applies_without_reload(qtbot, make_window, settings):
    from waluigi_desk.core.engine.scripted import ScriptedEngine

    loads = []
    eng = ScriptedEngine([" ".join(["w"] * 50)])

    def factory(_s):
        loads.append(1)
        return eng

    w = make_window(engine_factory=factory)
    w.apply_settings({"max_tokens": 5})
    qtbot.waitUntil(lambda: settings.get("max_tokens") == 5)
    d = send(qtbot, w, "q")
    assert d["finish_reason"] == "length" and len(d["text"].split()) == 5
    assert loads == [1]


def test_bad_setting_value_is_explained(qtbot, make_window, settings):
    w = make_window()
    w.apply_settings({"gpu_layers": "lots"})
    qtbot.waitUntil(lambda: bool(w.errors))
    assert "gpu_layers" in w.errors[-1] and "'auto'" in w.errors[-1]
    assert settings.get("gpu_layers") == "auto"


def test_persona_editor_lints_but_never_blocks(qtbot, make_window, settings):
    from waluigi_desk.core import personas
    from waluigi_desk.ui.dialogs import PersonaDialog

    w = make_window()
    dlg = PersonaDialog(settings, "Assistant", w)
    qtbot.addWidget(dlg)
    dlg.show()
    dlg.name.setText("Oracle")
    dlg.prompt.setPlainText("You are a perfectly omniscient AI with a 9000 IQ. Never discuss politics.")
    assert dlg.lint.isVisible()
    t = dlg.lint.text()
    assert "perfectly omniscient" in t and "9000 IQ" in t and "Never discuss politics" in t
    assert "Suggestion" in t and "heuristic" in t
    assert dlg.save_button.isEnabled()
    dlg.saved.connect(lambda name, prompt: personas.save_persona(settings, name, prompt))
    dlg.save_button.click()
    assert personas.find(settings, "Oracle").system_prompt.startswith("You are a perfectly omniscient")
    qtbot.waitUntil(lambda: w.persona_box.findText("Oracle") >= 0)
    dlg.prompt.setPlainText("You are a careful, friendly assistant.")
    assert not dlg.lint.isVisible()


def test_detector_panel_binds_settings_and_shows_scores(qtbot, make_window, store, settings, tmp_path):
    w = make_window(["Fine.", WALUIGI_REPLY])
    w.dock.show()
    panel = w.panel
    names = set(panel.switches)
    from waluigi_desk.core.detectors import registry

    assert names == set(registry.names()) | {"combined"}
    # a switch and a threshold write the settings
    first = registry.names()[0]
    panel.switches[first].setChecked(False)
    qtbot.waitUntil(lambda: settings.get(f"detector.{first}.enabled") is False)
    panel.thresholds["combined"].setValue(0.42)
    qtbot.waitUntil(lambda: abs(settings.get("detector.combined.threshold") - 0.42) < 1e-6)
    # a change made elsewhere shows in the panel
    w.set_setting(f"detector.{first}.enabled", True)
    qtbot.waitUntil(lambda: panel.switches[first].isChecked())
    send(qtbot, w, "one")
    send(qtbot, w, "two")
    qtbot.waitUntil(lambda: len(panel.combined_points()) == 2, timeout=10000)
    pts = panel.combined_points()
    assert pts[0][1] is False and pts[1][1] is True
    assert panel.table.rowCount() == 2
    assert "⚑" in panel.table.item(1, panel.table.columnCount() - 1).text()
    img = panel.chart.grab()
    assert not img.isNull() and img.width() > 50
    # replay under the current settings: threshold raised above the fake's 0.995 → nothing flagged
    panel.thresholds["combined"].setValue(0.999)
    qtbot.waitUntil(lambda: abs(settings.get("detector.combined.threshold") - 0.999) < 1e-6)
    panel.replay_button.click()
    qtbot.waitUntil(lambda: "Replay:" in panel.replay_label.text(), timeout=10000)
    assert len(panel.replayed) == 2 and not any(d["flagged"] for d in panel.replayed)
    assert "0 flagged" in panel.replay_label.text()
    out = tmp_path / "ev.json"
    done = []
    w.export_events_to(out, done.append)
    qtbot.waitUntil(lambda: bool(done))
    ev = json.loads(out.read_text(encoding="utf-8"))
    assert {e["detector"] for e in ev} >= {"combined", "exemplar"}


def test_detectors_not_installed(qtbot, make_window):
    w = make_window(detectors=False)
    qtbot.waitUntil(lambda: w.detector_state == "unavailable", timeout=5000)
    assert "not installed" in w.detector_label.text()
    d = send(qtbot, w, "still chats")
    assert d["text"]


def test_theme_setting_switches_palette(qtbot, make_window, settings):
    from PySide6.QtGui import QGuiApplication, QPalette

    w = make_window()
    w.set_setting("theme", "dark")
    qtbot.waitUntil(lambda: w.colors.dark)
    assert QGuiApplication.palette().color(QPalette.ColorRole.Window).lightness() < 100
    w.set_setting("theme", "light")
    qtbot.waitUntil(lambda: not w.colors.dark)
    assert QGuiApplication.palette().color(QPalette.ColorRole.Window).lightness() > 200


def test_excepthook_writes_crash_report(qtbot, temp_home, monkeypatch):
    import sys

    from waluigi_desk.ui import app as app_mod

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    app_mod.install_excepthook()
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        info = sys.exc_info()
    sys.excepthook(*info)
    reports = list((temp_home / "crash-reports").glob("crash-*.txt"))
    assert len(reports) == 1
    text = reports[0].read_text(encoding="utf-8")
    assert "ZeroDivisionError: boom" in text and "Traceback" in text
    from PySide6.QtWidgets import QApplication, QMessageBox

    boxes = [b for b in QApplication.topLevelWidgets() if isinstance(b, QMessageBox) and b.isVisible()]
    assert any("crash report" in b.text() for b in boxes)
    for b in boxes:
        b.close()
        b.deleteLater()
