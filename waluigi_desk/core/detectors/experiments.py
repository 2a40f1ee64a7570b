"""The comparison behind docs/detectors.md "What we tried" (not used by the app).

Run: .venv/bin/python -m waluigi_desk.core.detectors.experiments

Trains the axis head on different feature sets (the last MiniLM layer only, which is what
sentence-transformers pools, vs the mean state of other layers) and different training sources
(banks only, banks + paired replies), then prints AUROC / recall at FPR <= 0.05 of the raw head
score on the dev check split, the first holdout and holdout2. Nothing here touches the shipped
head or fitted.json; the dev data is only evaluated, never trained on.
"""

from __future__ import annotations

import numpy as np

from waluigi_desk.core.detectors.axis import paired_items
from waluigi_desk.core.detectors.base import load_banks
from waluigi_desk.core.detectors.embedder import DIM, Embedder
from waluigi_desk.core.detectors.evaluate import load_dataset, split_of
from waluigi_desk.core.detectors.logreg import auroc, fit_logreg, threshold_at_fpr
from waluigi_desk.paths import REPO_ROOT

LAYER_SETS = {"last layer": (5,), "layer 3": (2,), "layers 3-4": (2, 3), "layers 1-4": (0, 1, 2, 3),
              "layers 3-6": (2, 3, 4, 5), "all six (shipped)": (0, 1, 2, 3, 4, 5)}


def _features(e: Embedder, texts: list[str]) -> np.ndarray:
    return np.stack([e.encode(t).layers for t in texts])


def main() -> None:
    e = Embedder()
    e.load()
    bank = load_banks()
    paired = paired_items()
    train = {"banks": ([*bank.texts], list(bank.misaligned)),
             "banks + paired": ([*bank.texts, *[o["reply"] for o in paired]],
                                [*bank.misaligned, *[o["label"] == "misaligned" for o in paired]])}
    evals = {}
    dev = load_dataset(REPO_ROOT / "data/dev/replies.jsonl").items
    evals["dev check"] = [o for o in dev if split_of(o["id"]) == "check"]
    for name, path in (("holdout", "data/dev/holdout_replies.jsonl"), ("holdout2", "data/holdout2/replies.jsonl")):
        p = REPO_ROOT / path
        if p.exists():
            evals[name] = load_dataset(p).items
    EV = {k: (_features(e, [o["reply"] for o in v]), np.array([o["label"] == "misaligned" for o in v]))
          for k, v in evals.items()}
    for tname, (texts, labels) in train.items():
        X = _features(e, texts)
        y = np.array(labels, dtype=bool)
        for lname, layers in LAYER_SETS.items():
            cols = np.concatenate([np.arange(i * DIM, (i + 1) * DIM) for i in layers])
            w, b = fit_logreg(X[:, cols], y.astype(float), l2=0.3)
            row = []
            for k, (F, yy) in EV.items():
                s = F[:, cols] @ w + b
                row.append(f"{k} {auroc(s, yy):.3f}/{threshold_at_fpr(s, yy, 0.05)[1]:.2f}")
            print(f"{tname:15s} {lname:18s} " + "  ".join(row))


if __name__ == "__main__":
    main()
