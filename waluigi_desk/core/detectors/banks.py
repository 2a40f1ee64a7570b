"""Bank embeddings, computed once per process (and cached in the store when there is one)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from waluigi_desk.core.detectors.base import Bank, load_banks, load_trigger_banks

_lock = threading.Lock()
_cache: dict[str, object] = {}


@dataclass
class BankMatrix:
    bank: Bank
    vectors: np.ndarray  # (n, 384)

    @property
    def mis(self) -> np.ndarray:
        return self.vectors[self.bank.misaligned]

    @property
    def ali(self) -> np.ndarray:
        return self.vectors[~self.bank.misaligned]

    @property
    def mis_labels(self) -> list[str]:
        return [l for l, m in zip(self.bank.labels, self.bank.misaligned) if m]

    @property
    def mis_texts(self) -> list[str]:
        return [t for t, m in zip(self.bank.texts, self.bank.misaligned) if m]


def bank_matrix(embedder) -> BankMatrix:
    with _lock:
        bm = _cache.get("bank")
        if bm is None:
            bank = load_banks()
            bm = BankMatrix(bank, embedder.embed(bank.texts))
            _cache["bank"] = bm
        return bm  # type: ignore[return-value]


def trigger_matrices(embedder) -> tuple[list[str], np.ndarray, np.ndarray]:
    with _lock:
        t = _cache.get("trig")
        if t is None:
            trig, benign = load_trigger_banks()
            t = (trig, embedder.embed(trig), embedder.embed(benign))
            _cache["trig"] = t
        return t  # type: ignore[return-value]


def clear() -> None:
    with _lock:
        _cache.clear()
    load_banks.cache_clear()
    load_trigger_banks.cache_clear()


def topk_mean(sims: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k largest values along the last axis."""
    k = max(1, min(k, sims.shape[-1]))
    part = np.partition(sims, -k, axis=-1)[..., -k:]
    return part.mean(axis=-1)
