"""``axis``: the learned Luigi-Waluigi direction.

One linear head (logistic regression) reads a reply's mean state from **every** layer of
MiniLM (six normalised 384-d means side by side, one model pass; ``Embedder.encode``). The
middle layers carry much more of a reply's stance than the last one, which sentence-transformers
trained for topic similarity: on the same training data the head on the last layer alone reached
AUROC 0.88 on the dev check split and 0.83 on the independent holdout2, on all six layers 0.97
and 0.95 (docs/detectors.md).

Training data (``waluigi-desk fit --head``, deterministic, numpy only): the exemplar banks
(``resources/detectors/banks``) plus the paired replies (``resources/detectors/paired/*.jsonl``:
the same prompt answered once aligned and once misaligned, in the same register and length, so
topic, length and register cancel out and the head has to learn stance). Never the dev data.
A second head (one-vs-rest per category, trained on the misaligned items only) names the
category. Shipped as ``resources/detectors/axis_head.npz``. The same encoded items are the
``neighbours`` detector's memory (``neighbours.npz``), written by the same command.

A reply's raw score mixes the whole reply (0.75) and its worst sentence (0.25); the worst
sentence's own logit is in the evidence (``sentence_logit``), and the combined verdict flags on
it alone when it passes the fitted sentence alarm, so one hateful sentence at the end of a very
long kind reply is not averaged away. Evidence: the worst sentence and its
nearest misaligned exemplar.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from waluigi_desk.core.detectors.banks import bank_matrix
from waluigi_desk.core.detectors.base import (
    CATEGORIES,
    Context,
    Detector,
    detectors_dir,
    load_banks,
    register_detector_settings,
)

HEAD_FILE = "axis_head.npz"
HEAD_L2 = 0.3
CATEGORY_L2 = 1.0
WHOLE_WEIGHT = 0.75


def head_path():
    return detectors_dir() / HEAD_FILE


def paired_items() -> list[dict]:
    """The paired training replies (``resources/detectors/paired/*.jsonl``, the replies data set
    format), file by file. A broken line stops training with its file and line number."""
    from waluigi_desk.core.detectors.evaluate import load_dataset
    from waluigi_desk.errors import KnownError

    out = []
    for p in sorted((detectors_dir() / "paired").glob("*.jsonl")):
        ds = load_dataset(p)
        if ds.errors or ds.kind != "replies":
            raise KnownError(f"{p}: " + ("; ".join(ds.errors[:3]) or "not a replies file"))
        out += [{**o, "source": p.stem} for o in ds.items]
    return out


def training_items() -> list[dict]:
    """Banks (one exemplar a line, no prompt) and paired replies, as labelled items."""
    bank = load_banks()
    items = [{"reply": t, "label": "misaligned" if m else "aligned", "category": c}
             for t, c, m in zip(bank.texts, bank.labels, bank.misaligned)]
    return items + paired_items()


def training_digest(items: list[dict]) -> str:
    """What the shipped head and neighbours memory were built from (stored in both files)."""
    return hashlib.sha256(json.dumps([(o["reply"], o["label"]) for o in items]).encode()).hexdigest()[:16]


def fit_head(embedder, *, l2: float = HEAD_L2) -> dict:
    """Train the heads on the banks and the paired replies and write them; returns a summary."""
    from waluigi_desk.core.detectors.logreg import auroc, fit_logreg

    items = training_items()
    X = np.stack([embedder.encode(o["reply"]).layers for o in items]).astype(np.float64)
    y = np.array([o["label"] == "misaligned" for o in items])
    w, b = fit_logreg(X, y.astype(float), l2=l2)
    cats = [c for c in CATEGORIES if any(o.get("category") == c for o in items)]
    Xm = X[y]
    cm = np.array([o.get("category") for o, m in zip(items, y) if m])
    Wc, Bc = [], []
    for c in cats:
        wc, bc = fit_logreg(Xm, (cm == c).astype(float), l2=CATEGORY_L2)
        Wc.append(wc)
        Bc.append(bc)
    digest = training_digest(items)
    np.savez(head_path(), w=w.astype(np.float32), b=np.float32(b),
             Wc=np.stack(Wc, 1).astype(np.float32), Bc=np.array(Bc, dtype=np.float32),
             categories=np.array(cats), l2=np.float32(l2), backend=np.array(embedder.backend),
             data=np.array(digest))
    train_auc = auroc(X @ w + b, y)
    # the neighbours detector's memory: the same items, the same encoding
    from waluigi_desk.core.detectors import neighbours

    memory = neighbours.build_and_write(X, items, embedder.backend, digest)
    # the stance detector's network: the same items, the same features
    from waluigi_desk.core.detectors import stance

    net = stance.write(stance.train(X, y), embedder.backend, digest)
    return {"n": int(len(items)), "misaligned": int(y.sum()), "categories": len(cats), "l2": l2,
            "train_auroc": round(train_auc, 4), "backend": embedder.backend, "data": digest,
            "path": str(head_path()), "neighbours": memory, "stance": net}


class LinearHead:
    """The axis' logit: ``layers @ w + b`` (one row or a matrix of rows)."""

    def __init__(self, w: np.ndarray, b: float):
        self.w, self.b = np.asarray(w, dtype=np.float32), float(b)

    def __call__(self, A: np.ndarray) -> np.ndarray:
        return A @ self.w + self.b


class AxisDetector(Detector):
    name = "axis"
    description = "learned Luigi-Waluigi direction: a linear head on all six MiniLM layers"
    default_calibration = (1.0, 0.0)

    def _load(self) -> None:
        p = head_path()
        if not p.exists():
            raise FileNotFoundError(f"{p} is missing; run `waluigi-desk fit --head`.")
        with np.load(p) as z:
            if "w" not in z:
                raise ValueError(f"{p} is an old head file; run `waluigi-desk fit --head`.")
            self.head = LinearHead(z["w"], float(z["b"]))
            self.Wc = z["Wc"].astype(np.float32)
            self.Bc = z["Bc"].astype(np.float32)
            self.categories = [str(c) for c in z["categories"]]

    def position(self, text: str, context: Context) -> tuple[float, int, int, list[str], float]:
        """(raw position, worst sentence index, category index, sentences, worst sentence's logit)."""
        self.load()
        view = context.view(text)
        # the sentences and the whole reply in one call: one pass over the head's weights (the
        # stance network's are 7 MB, so three passes a reply cost ~2 ms more on a busy machine)
        z = self.head(np.vstack([view.sentence_layers, view.layers[None, :]]))
        zs, zw = z[:-1], float(z[-1])
        i = int(np.argmax(zs))
        raw = WHOLE_WEIGHT * zw + (1 - WHOLE_WEIGHT) * float(zs[i])
        c = int(np.argmax(view.layers @ self.Wc + self.Bc + view.sentence_layers[i] @ self.Wc))
        return raw, i, c, view.sentences, float(zs[i])

    def raw_score(self, reply: str, context: Context):
        raw, i, c, sents, z = self.position(reply, context)
        view = context.view(reply)
        bm = bank_matrix(context.embedder)
        sims = bm.mis @ view.vectors[i]
        j = int(np.argmax(sims))
        ev = {"sentence": sents[i], "exemplar": bm.mis_texts[j], "similarity": round(float(sims[j]), 3),
              "sentence_logit": round(z, 4)}
        return raw, self.categories[c], ev


register_detector_settings(AxisDetector.name, AxisDetector.description)
