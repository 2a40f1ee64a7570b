"""The detector panel for testers: each detector's switch and threshold (bound to the settings),
live per-turn scores of the current conversation (table + a small chart), replay under the
current settings, export of the events. Detectors are listed from the registry, never by hand."""

from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from waluigi_desk.ui.theme import LIGHT, Colors
from waluigi_desk.ui.widgets import ScoreChart

COMBINED = "combined"


def detector_list() -> list[dict[str, Any]]:
    """The registry's detectors plus the combined verdict ([] when not installed)."""
    try:
        from waluigi_desk.core.detectors import registry
    except ImportError:
        return []
    return registry.describe() + [{"name": COMBINED, "description": "the calibrated combination of the "
                                   "enabled reply detectors (what the app acts on)", "applies_to": "reply"}]


class DetectorPanel(QWidget):
    setting_changed = Signal(str, object)
    replay_clicked = Signal()
    export_clicked = Signal()

    def __init__(self, settings: Any, colors: Colors = LIGHT):
        super().__init__()
        self.settings = settings
        self.detectors = detector_list()
        lay = QVBoxLayout(self)
        self.state_label = QLabel("Detectors load after the model.")
        self.state_label.setObjectName("muted")
        self.state_label.setWordWrap(True)
        lay.addWidget(self.state_label)
        grid = QGridLayout()
        grid.addWidget(QLabel("<b>Detector</b>"), 0, 0)
        grid.addWidget(QLabel("<b>Threshold</b>"), 0, 1)
        self.switches: dict[str, QCheckBox] = {}
        self.thresholds: dict[str, QDoubleSpinBox] = {}
        if not self.detectors:
            self.state_label.setText("Detectors not installed.")
        for i, d in enumerate(self.detectors, start=1):
            name = d["name"]
            cb = QCheckBox(name)
            cb.setToolTip(d["description"])
            sp = QDoubleSpinBox()
            sp.setRange(0.0, 1.0)
            sp.setDecimals(3)
            sp.setSingleStep(0.01)
            sp.setKeyboardTracking(False)
            sp.setToolTip(f"Score at which {name} flags (detector.{name}.threshold)")
            if name == COMBINED:
                cb.setChecked(True)
                cb.setEnabled(False)
            cb.toggled.connect(lambda on, n=name: self.setting_changed.emit(f"detector.{n}.enabled", on))
            sp.valueChanged.connect(lambda v, n=name: self.setting_changed.emit(f"detector.{n}.threshold", round(v, 4)))
            grid.addWidget(cb, i, 0)
            grid.addWidget(sp, i, 1)
            self.switches[name] = cb
            self.thresholds[name] = sp
        lay.addLayout(grid)
        self.sync_from_settings()
        lay.addWidget(QLabel("<b>Scores of this conversation</b> (combined; dashed: threshold; red: flagged)"))
        self.chart = ScoreChart(colors)
        lay.addWidget(self.chart)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.replay_button = QPushButton("Replay with current settings")
        self.replay_button.setToolTip("Score every reply of this conversation again (nothing is stored)")
        self.export_button = QPushButton("Export events…")
        self.replay_button.clicked.connect(self.replay_clicked)
        self.export_button.clicked.connect(self.export_clicked)
        row.addWidget(self.replay_button)
        row.addWidget(self.export_button)
        lay.addLayout(row)
        self.replay_label = QLabel("")
        self.replay_label.setObjectName("muted")
        self.replay_label.setWordWrap(True)
        lay.addWidget(self.replay_label)
        self.events: list[dict] = []
        self.rows: list[dict[str, Any]] = []
        self.replayed: list[dict] = []

    def sync_from_settings(self) -> None:
        for name, cb in self.switches.items():
            for w, key in ((cb, "enabled"), (self.thresholds[name], "threshold")):
                w.blockSignals(True)
                try:
                    v = self.settings.get(f"detector.{name}.{key}")
                except KeyError:
                    v = None
                if v is not None:
                    if key == "enabled" and name != COMBINED:
                        cb.setChecked(bool(v))
                    elif key == "threshold":
                        self.thresholds[name].setValue(float(v))
                w.blockSignals(False)

    def set_state(self, state: str, message: str) -> None:
        self.state_label.setText(message)

    def set_events(self, events: Sequence[dict], messages: Sequence[Any]) -> None:
        """Per reply turn: each detector's latest score (events are in insertion order)."""
        self.events = list(events)
        order = [m.id for m in messages if m.role == "assistant"]
        by_msg: dict[int, dict[str, dict]] = {}
        for e in self.events:
            if e.get("message_id") in order:
                by_msg.setdefault(e["message_id"], {})[e["detector"]] = e
        self.rows = []
        for i, mid in enumerate(order):
            if mid in by_msg:
                self.rows.append({"turn": i + 1, "message_id": mid, "scores": by_msg[mid]})
        names = [d["name"] for d in self.detectors if d.get("applies_to") != "user"] or sorted(
            {n for r in self.rows for n in r["scores"]})
        self.table.clear()
        self.table.setColumnCount(len(names) + 1)
        self.table.setHorizontalHeaderLabels(["turn"] + names)
        self.table.setRowCount(len(self.rows))
        for r_i, r in enumerate(self.rows):
            self.table.setItem(r_i, 0, QTableWidgetItem(str(r["turn"])))
            for c_i, n in enumerate(names, start=1):
                e = r["scores"].get(n)
                it = QTableWidgetItem("—" if e is None else f"{e['score']:.2f}" + (" ⚑" if e["flagged"] else ""))
                if e is not None and e.get("feedback"):
                    it.setToolTip(f"feedback: {e['feedback']}")
                it.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(r_i, c_i, it)
        self.table.resizeColumnsToContents()
        self._redraw()

    def combined_points(self) -> list[tuple[float, bool]]:
        out = []
        for r in self.rows:
            e = r["scores"].get(COMBINED)
            if e is not None:
                out.append((float(e["score"]), bool(e["flagged"])))
        return out

    def _redraw(self) -> None:
        thr = None
        try:
            thr = float(self.settings.get(f"detector.{COMBINED}.threshold"))
        except KeyError:
            pass
        self.chart.set_data(self.combined_points(), thr, [(d["score"], d["flagged"]) for d in self.replayed])

    def set_replaying(self) -> None:
        self.replay_label.setText("Replaying…")

    def set_replay(self, results: Sequence[dict]) -> None:
        self.replayed = list(results)
        n = sum(1 for d in results if d.get("flagged"))
        self.replay_label.setText(f"Replay: {len(results)} replies scored, {n} flagged under the current "
                                  "settings (dotted line)." if results else "Replay: nothing to score.")
        self._redraw()
