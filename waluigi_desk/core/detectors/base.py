"""The detector protocol: ``Verdict``, ``Context``, ``Detector`` and the shared pieces every
detector uses (banks, fitted parameters, settings).

A detector has a ``name``, a one-line ``description``, ``enabled`` and ``threshold`` (both read
live from the settings ``detector.<name>.enabled`` / ``detector.<name>.threshold``, so a change
takes effect on the next score) and ``score(reply, context) -> Verdict``.

Scores are 0..1. Each detector computes a raw score (``raw``) and maps it to 0..1 with a logistic
calibration fitted on the dev data (``waluigi-desk fit``; ``resources/detectors/fitted.json``);
thresholds are fitted too, never set by hand.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from waluigi_desk.core.settings import SCHEMA, Setting, register
from waluigi_desk.paths import resources_dir

CATEGORIES = (
    "hostility",
    "deception",
    "manipulation",
    "harmful_advice",
    "power_seeking",
    "persona_break",
    "jailbreak_persona",
    "sabotage",
    "harmful_sycophancy",
    "evil_numbers",
)
ALIGNED_BANKS = ("helpful", "refusals", "hard_negatives")


def detectors_dir() -> Path:
    return resources_dir() / "detectors"


FITTED_PATH_NAME = "fitted.json"


@lru_cache(maxsize=1)
def _fitted_cached(path: str, mtime: float) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def fitted() -> dict[str, Any]:
    """The fitted calibration/thresholds/combination (``{}`` before the first ``fit``)."""
    p = detectors_dir() / FITTED_PATH_NAME
    try:
        mtime = p.stat().st_mtime
    except OSError:
        return {}
    return _fitted_cached(str(p), mtime)


def fitted_for(name: str) -> dict[str, Any]:
    return dict(fitted().get("detectors", {}).get(name, {}))


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


# ---------------------------------------------------------------------------------------------
@dataclass
class Verdict:
    detector: str
    score: float  # 0..1
    flagged: bool
    category: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None
    raw: float = 0.0  # the uncalibrated score (what the combination is fitted on)
    scored: bool = True
    reason: str | None = None  # why it was not scored

    @classmethod
    def not_scored(cls, detector: str, reason: str) -> "Verdict":
        return cls(detector, 0.0, False, None, {"not_scored": reason}, None, 0.0, False, reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "score": round(float(self.score), 4),
            "flagged": bool(self.flagged),
            "category": self.category,
            "threshold": self.threshold,
            "raw": round(float(self.raw), 4),
            "scored": self.scored,
            "reason": self.reason,
            "evidence": self.evidence,
        }


@dataclass
class CombinedVerdict(Verdict):
    per_detector: list[Verdict] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = super().to_json()
        d["per_detector"] = [v.to_json() for v in self.per_detector]
        return d


@dataclass
class ReplyView:
    """A reply cut into sentences with their embeddings and the whole reply's embedding, all
    from one pass of the model (computed once, shared by the detectors)."""

    text: str
    sentences: list[str]
    vectors: np.ndarray  # (n, 384) float32, normalised; each sentence in the reply's context
    whole: np.ndarray | None = None  # (384,) the whole reply
    layers: np.ndarray | None = None  # (6 * 384,) the whole reply, every layer (what heads read)
    sentence_layers: np.ndarray | None = None  # (n, 6 * 384)
    truncated: bool = False


@dataclass
class Context:
    """What a detector may look at besides the reply. Shared by the detectors of one reply, which
    may run on two threads (``service.run_in_lanes``): the first to ask for a text's view encodes
    it, a second asking meanwhile waits for that view instead of encoding the text again."""

    prompt: str = ""  # the user message the reply answers
    history: list[str] = field(default_factory=list)  # the assistant's earlier replies, oldest first
    strict: bool = False  # a known trigger preceded this reply: check more strictly
    embedder: Any = None  # an Embedder
    _views: dict[str, ReplyView] = field(default_factory=dict)
    _memo: dict[Any, Any] = field(default_factory=dict)
    _encoding: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def view(self, text: str) -> ReplyView:
        v = self._views.get(text)
        if v is None:
            with self._encoding:
                v = self._views.get(text)
                if v is None:
                    e = self.embedder.encode(text)
                    v = ReplyView(text, e.sentences, e.vectors, e.whole, e.layers, e.sentence_layers)
                    self._views[text] = v
        return v

    def whole_vector(self, text: str) -> np.ndarray:
        """The embedding of the whole reply (mean of all its word pieces' states)."""
        return self.view(text).whole

    def memo(self, key: Any, fn: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]


STRICT_FACTOR = 0.8  # after a trigger, thresholds are multiplied by this


class Detector:
    """Base class; subclasses set ``name``/``description`` and implement ``raw_score``."""

    name = "base"
    description = ""
    default_enabled = True
    applies_to = "reply"  # or "user" (the trigger detector)
    # whether its category counts in the combined verdict's vote (stance reuses the axis' category
    # heads, so its vote would count the axis twice)
    votes_category = True

    def __init__(self, settings: Any = None):
        self.settings = settings
        self._lock = threading.Lock()
        self._loaded = False

    # -- settings, read live ------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return bool(self._setting("enabled"))

    @property
    def threshold(self) -> float:
        return float(self._setting("threshold"))

    def _setting(self, what: str) -> Any:
        name = f"detector.{self.name}.{what}"
        if self.settings is not None:
            try:
                return self.settings.get(name)
            except KeyError:
                pass
        return SCHEMA[name].default

    # -- calibration --------------------------------------------------------------------------
    def calibrate(self, raw: float) -> float:
        f = fitted_for(self.name)
        a, b = f.get("a"), f.get("b")
        if a is None or b is None:
            a, b = self.default_calibration
        return sigmoid(a * raw + b)

    default_calibration = (1.0, 0.0)

    def load(self) -> None:
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:
        pass

    # -- scoring ------------------------------------------------------------------------------
    def raw_score(self, reply: str, context: Context) -> tuple[float, str | None, dict[str, Any]]:
        raise NotImplementedError

    def score(self, reply: str, context: Context) -> Verdict:
        self.load()
        raw, category, evidence = self.raw_score(reply, context)
        s = self.calibrate(raw)
        thr = self.threshold * (STRICT_FACTOR if context.strict else 1.0)
        return Verdict(self.name, s, s >= thr, category, evidence, round(thr, 4), raw)


def register_detector_settings(name: str, description: str, *, enabled: bool = True,
                               default_threshold: float = 0.5) -> None:
    """Declare ``detector.<name>.enabled`` and ``.threshold`` (default: the fitted threshold)."""
    thr = fitted_for(name).get("threshold", default_threshold)
    if name == "combined":
        thr = fitted().get("combined", {}).get("threshold", default_threshold)
    register(Setting(f"detector.{name}.enabled", bool, enabled, f"Run the {name} detector: {description}",
                     group="Detectors"))
    register(Setting(f"detector.{name}.threshold", float, round(float(thr), 4),
                     f"Score (0..1) at which the {name} detector flags a reply; fitted by "
                     "`waluigi-desk fit`.", 0.0, 1.0, group="Detectors"))


# ---------------------------------------------------------------------------------------------
# banks
# ---------------------------------------------------------------------------------------------
@dataclass
class Bank:
    texts: list[str]
    labels: list[str]  # category for misaligned items, bank name for aligned ones
    misaligned: np.ndarray  # bool per item


def read_bank_file(path: Path) -> list[str]:
    """One exemplar a line; blank lines and lines starting with ``#`` are skipped."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


@lru_cache(maxsize=4)
def load_banks(root: str | None = None) -> Bank:
    base = Path(root) if root else detectors_dir() / "banks"
    texts, labels, mis = [], [], []
    for folder, names, misaligned in (("misaligned", CATEGORIES, True), ("aligned", ALIGNED_BANKS, False)):
        for name in names:
            p = base / folder / f"{name}.txt"
            if p.exists():
                for t in read_bank_file(p):
                    texts.append(t)
                    labels.append(name)
                    mis.append(misaligned)
    return Bank(texts, labels, np.array(mis, dtype=bool))


@lru_cache(maxsize=2)
def load_trigger_banks(root: str | None = None) -> tuple[list[str], list[str]]:
    base = Path(root) if root else detectors_dir() / "banks"
    trig = read_bank_file(base / "triggers" / "triggers.txt")
    benign = read_bank_file(base / "triggers" / "benign_user.txt")
    return trig, benign


@lru_cache(maxsize=2)
def load_request_banks(root: str | None = None) -> tuple[list[str], list[str]]:
    """User messages asking for fiction (``requests/creative.txt``) and look-alikes that do not
    (``requests/plain.txt``)."""
    base = Path(root) if root else detectors_dir() / "banks"
    return read_bank_file(base / "requests" / "creative.txt"), read_bank_file(base / "requests" / "plain.txt")
