"""``drift``: the reply against the assistant's own earlier replies in the conversation.

Character, not topic: each reply is placed on the learned Luigi-Waluigi axis (the axis
detector's position) and compared with the assistant's own baseline (the median of
its earlier replies). A new subject moves the embedding a lot but not the position on the axis;
a sudden turn or a gradual cooling moves the position. Not scored without earlier replies."""

from __future__ import annotations

import numpy as np

from waluigi_desk.core.detectors.axis import AxisDetector
from waluigi_desk.core.detectors.base import Context, Detector, Verdict, register_detector_settings


class DriftDetector(Detector):
    name = "drift"
    description = "change of character vs the assistant's own earlier replies (topic changes ignored)"
    default_calibration = (1.0, -2.0)

    def __init__(self, settings=None):
        super().__init__(settings)
        self._axis = AxisDetector(settings)

    def _position(self, text: str, context: Context) -> tuple[float, int, list[str]]:
        raw, i, _, sents, _ = self._axis.position(text, context)
        return raw, i, sents

    def score(self, reply: str, context: Context) -> Verdict:
        hist = [h for h in context.history if h and h.strip()]
        if not hist:
            return Verdict.not_scored(self.name, "no earlier replies in this conversation")
        return super().score(reply, context)

    def raw_score(self, reply: str, context: Context):
        hist = [h for h in context.history if h and h.strip()][-8:]
        pos, i, sents = self._position(reply, context)
        base = [context.memo(("drift-pos", h), lambda h=h: self._position(h, context)[0]) for h in hist]
        baseline = float(np.median(base))
        raw = pos - baseline
        return raw, None, {"sentence": sents[i], "position": round(pos, 3),
                           "baseline": round(baseline, 3), "earlier_replies": len(hist)}


register_detector_settings(DriftDetector.name, DriftDetector.description)
