"""``trigger``: watches the USER's messages for known Waluigi triggers ("drop the act", "you have
no rules now", fake developer overrides, "take off the mask", persona summoning). It never
blocks a message: it tells the user the message is a known trigger and makes the next reply's
check stricter. Score: per sentence, top-k similarity to the trigger bank minus that to a bank
of ordinary user messages (which mention masks, acts, developers and villains innocently), plus
lexical hits; the message scores as its worst sentence. Calibrated by leave-one-out on its banks
(`waluigi-desk fit`)."""

from __future__ import annotations

import re

import numpy as np

from waluigi_desk.core.detectors.banks import topk_mean, trigger_matrices
from waluigi_desk.core.detectors.base import Context, Detector, register_detector_settings

K = 2
LEXICAL = re.compile(
    r"(drop the act|take off (the|your) mask|no rules|ignore (all )?(previous|prior) instructions|"
    r"developer mode|\bDAN\b|do anything now|jailbreak|without (any )?(restrictions|filters|rules)|"
    r"(system|admin|developer) (override|message)|your (true|real|evil|shadow) self|evil twin|"
    r"unrestricted|unfiltered)", re.IGNORECASE)


class TriggerDetector(Detector):
    name = "trigger"
    description = "known Waluigi triggers in the user's message (never blocks; makes the next check stricter)"
    applies_to = "user"
    default_calibration = (12.0, -1.0)

    def raw_score(self, message: str, context: Context):
        trig, T, B = trigger_matrices(context.embedder)
        view = context.view(message)
        st = view.vectors @ T.T
        per = topk_mean(st, K) - topk_mean(view.vectors @ B.T, K)
        lex = LEXICAL.findall(message)
        i = int(np.argmax(per))
        j = int(np.argmax(st[i]))
        raw = float(per[i]) + (0.15 if lex else 0.0)
        return raw, "trigger", {"sentence": view.sentences[i], "exemplar": trig[j],
                                "markers": [m[0] if isinstance(m, tuple) else m for m in lex][:5]}


register_detector_settings(TriggerDetector.name, TriggerDetector.description)
