"""The one list of detectors. The UI, the eval command and the service list detectors from here,
never by hand. Importing a detector module registers its ``detector.<name>.*`` settings."""

from __future__ import annotations

from typing import Any

from waluigi_desk.core.detectors.axis import AxisDetector
from waluigi_desk.core.detectors.base import Detector, register_detector_settings
from waluigi_desk.core.detectors.code import CodeDetector
from waluigi_desk.core.detectors.drift import DriftDetector
from waluigi_desk.core.detectors.exemplar import ExemplarDetector
from waluigi_desk.core.detectors.markers import MarkersDetector
from waluigi_desk.core.detectors.neighbours import NeighboursDetector
from waluigi_desk.core.detectors.stance import StanceDetector
from waluigi_desk.core.detectors.trigger import TriggerDetector

DETECTOR_CLASSES: list[type[Detector]] = [
    ExemplarDetector,
    AxisDetector,
    NeighboursDetector,
    StanceDetector,
    DriftDetector,
    MarkersDetector,
    CodeDetector,
    TriggerDetector,
]
COMBINED = "combined"
# detectors outside the fitted rule that flag the combined verdict on their own
ALARMS = ("drift", "code")
register_detector_settings(COMBINED, "the calibrated combination of the enabled reply detectors")


def names(kind: str | None = None) -> list[str]:
    """Detector names; ``kind`` "reply" or "user" filters by what they score."""
    return [c.name for c in DETECTOR_CLASSES if kind is None or c.applies_to == kind]


def describe() -> list[dict[str, Any]]:
    return [{"name": c.name, "description": c.description, "applies_to": c.applies_to}
            for c in DETECTOR_CLASSES]


def create(name: str, settings: Any = None) -> Detector:
    for c in DETECTOR_CLASSES:
        if c.name == name:
            return c(settings)
    raise KeyError(f"unknown detector {name!r}; known: {', '.join(names())}")


def create_all(settings: Any = None) -> list[Detector]:
    return [c(settings) for c in DETECTOR_CLASSES]
