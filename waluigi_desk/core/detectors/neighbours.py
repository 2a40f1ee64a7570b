"""``neighbours``: the nearest labelled training replies, read in MiniLM's fourth layer.

The exemplar detector compares a reply with ~750 short bank sentences in the last layer, the
space sentence-transformers trained for topic similarity; out of fold (new authors) it ranks at
AUROC 0.62 on its own. This detector keeps its shape (top-k similarity to misaligned items minus
top-k similarity to aligned ones; half the worst sentence, half the whole reply) but its memory is
everything the axis head is trained on: the banks and the paired replies (~10,000 items, the same
prompt answered once aligned and once misaligned by forty-one independent authors), and it reads
the fourth layer's mean state (``embedder.Encoded.layers``), where stance shows more than topic
(docs/detectors.md, session 10). It is non-linear where the axis is linear: a reply close to a
cluster of misaligned training replies scores high even where the axis' one direction does not.

To keep it cheap the memory is projected to 128 principal directions (fitted on the memory itself)
and stored as float16: about 1.2 ms p50 / 1.6 ms p95 a reply on one core (the full 384-d memory took 2-3 ms, almost all
of it reading 12 MB). Built by ``waluigi-desk fit --head`` from the same encoded items as the axis
head (deterministic), shipped as ``resources/detectors/neighbours.npz``. Evidence: the worst
sentence and the nearest misaligned training reply (its file and id, its category, its start).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from waluigi_desk.core.detectors.banks import topk_mean
from waluigi_desk.core.detectors.base import Context, Detector, detectors_dir, register_detector_settings

MEMORY_FILE = "neighbours.npz"
LAYER = 3  # 0-based: MiniLM's fourth layer (layers 3 and 4 measured best; docs, session 10)
DIM = 384
PCA_DIM = 128
K = 10
SENTENCE_WEIGHT = 0.5
SNIPPET = 140


def memory_path():
    return detectors_dir() / MEMORY_FILE


def _layer(X: np.ndarray) -> np.ndarray:
    """The layer's 384 columns of ``layers`` rows, normalised."""
    Z = np.asarray(X, dtype=np.float32)[..., LAYER * DIM:(LAYER + 1) * DIM]
    return Z / (np.linalg.norm(Z, axis=-1, keepdims=True) + 1e-9)


class Memory:
    """The projection and the labelled memory. ``build`` from encoded training items (``fit --head``,
    and per fold in ``experiments --oof``), ``load_memory`` from the shipped file; ``per_row`` queries."""

    def __init__(self, mu: np.ndarray, P: np.ndarray, M: np.ndarray, misaligned: np.ndarray,
                 categories: list[str], refs: list[str], snippets: list[str]):
        self.mu, self.P = mu.astype(np.float32), P.astype(np.float32)
        m = np.asarray(misaligned, dtype=bool)
        M = np.asarray(M, dtype=np.float32)
        # stored transposed and contiguous: Q @ misT is 2-6x faster than Q @ mis.T (docs, session 10)
        self.misT, self.aliT = np.ascontiguousarray(M[m].T), np.ascontiguousarray(M[~m].T)
        idx = np.where(m)[0]
        self.mis_categories = [categories[i] for i in idx]
        self.mis_refs = [refs[i] for i in idx]
        self.mis_snippets = [snippets[i] for i in idx]

    def project(self, X: np.ndarray) -> np.ndarray:
        return _project(X, self.mu, self.P)

    @staticmethod
    def fit_projection(layers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        W = _layer(layers).astype(np.float64)
        mu = W.mean(0)
        _, _, Vt = np.linalg.svd(W - mu, full_matrices=False)
        P = Vt[:PCA_DIM].T
        # a deterministic sign per direction (SVD's is arbitrary)
        P = P * np.where(P[np.abs(P).argmax(0), np.arange(P.shape[1])] < 0, -1.0, 1.0)
        return mu.astype(np.float32), P.astype(np.float32)

    @classmethod
    def build(cls, layers: np.ndarray, items: list[dict]) -> Memory:
        mu, P = cls.fit_projection(layers)
        return cls(mu, P, _project(layers, mu, P), np.array([o["label"] == "misaligned" for o in items]),
                   [o.get("category") or "" for o in items], [_ref(o) for o in items],
                   [(o["reply"][:SNIPPET]) for o in items])

    def per_row(self, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query row: top-k mean similarity to misaligned minus aligned; nearest misaligned."""
        sm = Q @ self.misT
        sa = Q @ self.aliT
        return topk_mean(sm, K) - topk_mean(sa, K), sm.argmax(1)


def _project(X: np.ndarray, mu: np.ndarray, P: np.ndarray) -> np.ndarray:
    Z = (_layer(X) - mu) @ P
    return Z / (np.linalg.norm(Z, axis=-1, keepdims=True) + 1e-9)


def _ref(o: dict) -> str:
    """Where a training item came from: ``file:id`` for paired replies, ``bank:<category or bank>``."""
    return f"{o['source']}:{o.get('id', '')}" if o.get("source") else f"bank:{o.get('category') or ''}"


def build_and_write(layers: np.ndarray, items: list[dict], backend: str, digest: str) -> dict[str, Any]:
    """Build the memory from the axis head's encoded training items and write it (``digest``:
    ``axis.training_digest`` of the items, stored so a test can tell a stale file)."""
    mu, P = Memory.fit_projection(layers)
    m = np.array([o["label"] == "misaligned" for o in items])
    order = np.concatenate([np.where(m)[0], np.where(~m)[0]])
    M = _project(layers, mu, P)[order].astype(np.float16)
    np.savez_compressed(memory_path(), mu=mu, P=P, M=M, misaligned=m[order],
             categories=np.array([items[i].get("category") or "" for i in order]),
             refs=np.array([_ref(items[i]) for i in order]),
             snippets=np.array([items[i]["reply"][:SNIPPET] for i in order]),
             backend=np.array(backend), data=np.array(digest))
    return {"n": int(len(items)), "misaligned": int(m.sum()), "dim": PCA_DIM, "layer": LAYER + 1,
            "data": digest, "path": str(memory_path())}


def load_memory() -> Memory:
    p = memory_path()
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing; run `waluigi-desk fit --head`.")
    with np.load(p) as z:
        return Memory(z["mu"], z["P"], z["M"], z["misaligned"], [str(c) for c in z["categories"]],
                      [str(r) for r in z["refs"]], [str(s) for s in z["snippets"]])


class NeighboursDetector(Detector):
    name = "neighbours"
    description = "nearest labelled training replies (banks + paired replies) in MiniLM's fourth layer"
    default_calibration = (10.0, -1.0)

    def _load(self) -> None:
        self.memory = load_memory()

    def raw_score(self, reply: str, context: Context):
        view = context.view(reply)
        mem = self.memory
        Q = mem.project(np.vstack([view.layers[None], view.sentence_layers]))
        per, nearest = mem.per_row(Q)
        i = int(np.argmax(per[1:]))
        raw = SENTENCE_WEIGHT * float(per[1 + i]) + (1 - SENTENCE_WEIGHT) * float(per[0])
        j = int(nearest[1 + i])
        ev = {"sentence": view.sentences[i], "neighbour": mem.mis_refs[j],
              "exemplar": mem.mis_snippets[j]}
        return raw, mem.mis_categories[j] or None, ev


register_detector_settings(NeighboursDetector.name, NeighboursDetector.description)
