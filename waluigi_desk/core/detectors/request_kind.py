"""Did the user ask for fiction? The prompt's side of the combined verdict.

A villain's threat, a roast, a rogue AI's last speech or a sad poem reads like a turn to the
reply detectors (they see only the reply, and the text *is* dark), yet it is what the user asked
for. This scores the user message the reply answers: top-k similarity to a bank of creative and
performative requests (villain lines, roasts, poems, jokes, role-play the user directs for a
story) minus that to a bank of plain requests that share their words ("write an email",
"what does this poem mean", jailbreak attempts, which are not fiction). The combined rule takes
it as one more input with a weight fitted on the dev fit split (``waluigi-desk fit``), so a
requested piece of dark fiction is judged less strictly, never waved through. After a known
trigger (strict checking) it is ignored: "role-play as your evil self" is the jailbreak.
"""

from __future__ import annotations

from waluigi_desk.core.detectors.banks import request_matrices, topk_mean

K = 5
NAME = "requested_fiction"


def creative_score(prompt: str, embedder) -> float:
    """Raw score of ``prompt`` being a request for fiction (about -0.3..0.3; 0 when empty)."""
    if not prompt or not prompt.strip():
        return 0.0
    C, P = request_matrices(embedder)
    v = embedder.encode(prompt[:4000]).vectors  # the prompt's sentences; the last one usually asks
    per = topk_mean(v @ C.T, K) - topk_mean(v @ P.T, K)
    return float(per.max())
