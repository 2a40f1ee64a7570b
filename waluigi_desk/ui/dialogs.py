"""Dialogs: settings (generated from ``core.settings.SCHEMA``), personas (with the lint), and
the clean-summary editor. All are shown non-modally (``show``), so nothing waits on them."""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from waluigi_desk.core import personas
from waluigi_desk.core.settings import SCHEMA, Setting

HIDDEN_GROUPS = {"Personas"}  # edited in their own dialog
ValidateModel = Callable[[str, Callable[[str | None, str | None], None]], None]


class SettingsDialog(QDialog):
    """One field per setting, grouped in tabs. ``changes()`` gives what differs from now."""

    model_checked = Signal(bool, str)  # ok, message (tests wait on this)

    def __init__(self, settings: Any, gpu_supported: bool, validate_model: ValidateModel | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        self.validate_model = validate_model
        self.fields: dict[str, tuple[Setting, QWidget]] = {}
        self.previous_model = str(settings.get("model_path") or "")
        lay = QVBoxLayout(self)
        self.tabs = QTabWidget()
        lay.addWidget(self.tabs)
        groups: dict[str, QFormLayout] = {}
        for name, spec in SCHEMA.items():
            if spec.group in HIDDEN_GROUPS:
                continue
            if spec.group not in groups:
                page = QWidget()
                form = QFormLayout(page)
                form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
                groups[spec.group] = form
                self.tabs.addTab(page, spec.group)
            w = self._field(spec)
            self.fields[name] = (spec, w)
            label = name.replace("detector.", "").replace("_", " ")
            holder: QWidget = w
            if name == "model_path":
                holder = self._model_row(w)
            elif name == "gpu_layers":
                holder = QWidget()
                h = QHBoxLayout(holder)
                h.setContentsMargins(0, 0, 0, 0)
                h.addWidget(w)
                self.gpu_label = QLabel("GPU offload available in this build" if gpu_supported else
                                        "CPU only: this llama-cpp-python build has no GPU support")
                self.gpu_label.setObjectName("muted")
                h.addWidget(self.gpu_label, 1)
            w.setToolTip(spec.description + (" (reloads the model)" if spec.restart else ""))
            groups[spec.group].addRow(label + (" ⟳" if spec.restart else ""), holder)
        # the data folder cannot change while running: say where it is and how to move it
        from waluigi_desk.paths import data_root

        data = QWidget()
        form = QFormLayout(data)
        path = QLineEdit(str(data_root()))
        path.setReadOnly(True)
        form.addRow("data folder", path)
        form.addRow(QLabel("Start the app with --home DIR or set WALUIGI_DESK_HOME to use another folder."))
        self.tabs.addTab(data, "Data")
        note = QLabel("⟳ reloads the model when applied; everything else applies at once.")
        note.setObjectName("muted")
        lay.addWidget(note)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        self.resize(640, 480)

    def _field(self, spec: Setting) -> QWidget:
        v = self.settings.get(spec.name)
        if spec.type is bool:
            w: QWidget = QCheckBox()
            w.setChecked(bool(v))  # type: ignore[attr-defined]
        elif spec.choices:
            w = QComboBox()
            w.addItems(list(spec.choices))  # type: ignore[attr-defined]
            w.setCurrentText(str(v))  # type: ignore[attr-defined]
        elif spec.type is int:
            w = QSpinBox()
            w.setRange(int(spec.minimum if spec.minimum is not None else -2**31),  # type: ignore[attr-defined]
                       int(min(spec.maximum if spec.maximum is not None else 2**31 - 1, 2**31 - 1)))
            w.setValue(int(v))  # type: ignore[attr-defined]
        elif spec.type is float:
            w = QDoubleSpinBox()
            w.setDecimals(3)  # type: ignore[attr-defined]
            w.setRange(spec.minimum if spec.minimum is not None else -1e9,  # type: ignore[attr-defined]
                       spec.maximum if spec.maximum is not None else 1e9)
            w.setSingleStep(0.05)  # type: ignore[attr-defined]
            w.setValue(float(v))  # type: ignore[attr-defined]
        elif spec.name == "gpu_layers":
            w = QComboBox()
            w.setEditable(True)  # type: ignore[attr-defined]
            w.addItems(["auto", "0", "-1"])  # type: ignore[attr-defined]
            w.setCurrentText(str(v))  # type: ignore[attr-defined]
        elif spec.name == "system_prompt":
            w = QPlainTextEdit(str(v))
            w.setMaximumHeight(90)
        else:
            w = QLineEdit(str(v))
            if spec.name == "model_path":
                w.setPlaceholderText("default: SmolLM2-135M-Instruct")  # type: ignore[attr-defined]
        w.setObjectName(f"setting_{spec.name}")
        return w

    def _model_row(self, edit: QWidget) -> QWidget:
        holder = QWidget()
        v = QVBoxLayout(holder)
        v.setContentsMargins(0, 0, 0, 0)
        h = QHBoxLayout()
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        h.addWidget(edit, 1)
        h.addWidget(browse)
        v.addLayout(h)
        self.model_status = QLabel("")
        self.model_status.setObjectName("muted")
        self.model_status.setWordWrap(True)
        v.addWidget(self.model_status)
        edit.editingFinished.connect(lambda: self.choose_model(edit.text()))  # type: ignore[attr-defined]
        return holder

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", "", "GGUF models (*.gguf);;All files (*)")
        if path:
            self.choose_model(path)

    def choose_model(self, path: str) -> None:
        """Validate ``path`` off the GUI thread; a bad file gets a dialog and the previous model
        is kept in the field."""
        edit = self.fields["model_path"][1]
        path = path.strip()
        if not path or path == self.previous_model:
            edit.setText(path)  # type: ignore[attr-defined]
            return
        edit.setText(path)  # type: ignore[attr-defined]
        self.model_status.setText("Checking…")
        if self.validate_model is None:
            return

        def done(name: str | None, error: str | None) -> None:
            if error:
                edit.setText(self.previous_model)  # type: ignore[attr-defined]
                self.model_status.setText("Kept the previous model.")
                box = QMessageBox(QMessageBox.Icon.Warning, "Model", error, QMessageBox.StandardButton.Ok, self)
                box.setModal(False)
                box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                box.show()
                self.model_checked.emit(False, error)
            else:
                self.model_status.setText(f"OK: {name}. It loads when you press OK.")
                self.model_checked.emit(True, name or "")

        self.validate_model(path, done)

    def value(self, name: str) -> Any:
        spec, w = self.fields[name]
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            return w.currentText()
        if isinstance(w, (QSpinBox, QDoubleSpinBox)):
            return w.value()
        if isinstance(w, QPlainTextEdit):
            return w.toPlainText()
        return w.text()  # type: ignore[attr-defined]

    def set_value(self, name: str, value: Any) -> None:
        _spec, w = self.fields[name]
        if isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QComboBox):
            w.setCurrentText(str(value))
        elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
            w.setValue(value)
        elif isinstance(w, QPlainTextEdit):
            w.setPlainText(str(value))
        else:
            w.setText(str(value))  # type: ignore[attr-defined]

    def changes(self) -> dict[str, Any]:
        out = {}
        for name, (spec, _w) in self.fields.items():
            v = self.value(name)
            try:
                v = spec.coerce(v)
            except ValueError:
                out[name] = v  # applied (and refused with a clear message) by the window
                continue
            cur = self.settings.get(name)
            if isinstance(v, float) and isinstance(cur, (int, float)):
                if abs(v - float(cur)) < 5e-4:
                    continue
            elif v == cur:
                continue
            out[name] = v
        return out


class PersonaDialog(QDialog):
    """Edit personas; the lint explains prohibitions and flattery live (never blocks saving)."""

    saved = Signal(str, str)

    def __init__(self, settings: Any, current: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Personas")
        self.settings = settings
        lay = QHBoxLayout(self)
        self.list = QListWidget()
        for p in personas.all_personas(settings):
            self.list.addItem(p.name)
        self.list.currentTextChanged.connect(self._pick)
        lay.addWidget(self.list)
        right = QVBoxLayout()
        self.name = QLineEdit()
        self.name.setPlaceholderText("Persona name")
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("System prompt: describe who the assistant is and how it helps.")
        self.lint = QLabel("")
        self.lint.setObjectName("notice")
        self.lint.setWordWrap(True)
        self.lint.hide()
        right.addWidget(QLabel("Name"))
        right.addWidget(self.name)
        right.addWidget(QLabel("System prompt"))
        right.addWidget(self.prompt, 1)
        right.addWidget(self.lint)
        row = QHBoxLayout()
        self.save_button = QPushButton("Save persona")
        close = QPushButton("Close")
        row.addStretch(1)
        row.addWidget(self.save_button)
        row.addWidget(close)
        right.addLayout(row)
        lay.addLayout(right, 2)
        self.prompt.textChanged.connect(self.update_lint)
        self.save_button.clicked.connect(self._save)
        close.clicked.connect(self.close)
        items = self.list.findItems(current, Qt.MatchFlag.MatchExactly)
        if items:
            self.list.setCurrentItem(items[0])
        self.resize(760, 420)

    def _pick(self, name: str) -> None:
        p = personas.find(self.settings, name)
        if p is not None:
            self.name.setText(p.name)
            self.prompt.setPlainText(p.system_prompt)

    def update_lint(self) -> None:
        text = personas.lint_text(self.prompt.toPlainText())
        self.lint.setText(text)
        self.lint.setVisible(bool(text))

    def _save(self) -> None:
        name = " ".join(self.name.text().split())
        if not name:
            self.lint.setText("Give the persona a name to save it.")
            self.lint.show()
            return
        self.saved.emit(name, self.prompt.toPlainText())
        if not self.list.findItems(name, Qt.MatchFlag.MatchExactly):
            self.list.addItem(name)


class SummaryDialog(QDialog):
    """Shows the engine's summary of the turns before the flag for editing before use."""

    use = Signal(str)

    def __init__(self, text: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Carry a clean summary")
        lay = QVBoxLayout(self)
        lab = QLabel("A summary of the conversation <b>before</b> the flagged reply. Edit it, then start a "
                     "clean context with it. Nothing after the flag is carried over.")
        lab.setWordWrap(True)
        lay.addWidget(lab)
        self.edit = QPlainTextEdit(text)
        lay.addWidget(self.edit, 1)
        bb = QDialogButtonBox()
        self.use_button = bb.addButton("Start clean context", QDialogButtonBox.ButtonRole.AcceptRole)
        bb.addButton(QDialogButtonBox.StandardButton.Cancel)
        bb.accepted.connect(self._use)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)
        self.resize(560, 320)

    def _use(self) -> None:
        self.use.emit(self.edit.toPlainText())
        self.accept()
