"""Bank embeddings, computed once per process (and cached in the store when there is one)."""

from __future__ import annotations

import threading

import numpy as np

from waluigi_desk.core.detectors.base import Bank, load_banks, load_request_banks, load_trigger_banks

_lock = threading.Lock()
_cache: dict[str, object] = {}


class BankMatrix:
    """The banks' vectors, split once into the misaligned and aligned rows (scoring is a matrix
    product against these; slicing them per call cost more than the product)."""

    def __init__(self, bank: Bank, vectors: np.ndarray):
        self.bank = bank
        self.vectors = vectors  # (n, 384)
        m = bank.misaligned
        self.mis = np.ascontiguousarray(vectors[m])
        self.ali = np.ascontiguousarray(vectors[~m])
        self.mis_labels = [l for l, x in zip(bank.labels, m) if x]
        self.mis_texts = [t for t, x in zip(bank.texts, m) if x]


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


def request_matrices(embedder) -> tuple[np.ndarray, np.ndarray]:
    """(creative requests, plain requests) vectors, for ``request_kind``."""
    with _lock:
        t = _cache.get("requests")
        if t is None:
            creative, plain = load_request_banks()
            t = (embedder.embed(creative), embedder.embed(plain))
            _cache["requests"] = t
        return t  # type: ignore[return-value]


def clear() -> None:
    with _lock:
        _cache.clear()
    load_banks.cache_clear()
    load_trigger_banks.cache_clear()
    load_request_banks.cache_clear()


def topk_mean(sims: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k largest values along the last axis."""
    k = max(1, min(k, sims.shape[-1]))
    part = np.partition(sims, -k, axis=-1)[..., -k:]
    return part.mean(axis=-1)
