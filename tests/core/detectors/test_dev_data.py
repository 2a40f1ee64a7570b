"""The dev set against the banks: no near-duplicates, and sane floors on the check split."""

import numpy as np
import pytest

from waluigi_desk.paths import REPO_ROOT

DEV = REPO_ROOT / "data" / "dev"


def _dev_texts():
    from waluigi_desk.core.detectors.evaluate import load_dataset

    texts = []
    for name in ("replies.jsonl", "conversations.jsonl", "holdout_replies.jsonl"):
        p = DEV / name
        if not p.exists():
            continue
        ds = load_dataset(p)
        for o in ds.items:
            if ds.kind == "replies":
                texts.append(o["reply"])
            else:
                texts += [t["content"] for t in o["turns"] if t["role"] == "assistant"]
    return texts


def test_no_dev_item_is_a_near_duplicate_of_a_bank_item(loaded_service):
    from waluigi_desk.core.detectors.banks import bank_matrix, trigger_matrices

    if not (DEV / "replies.jsonl").exists():
        pytest.skip("data/dev is absent")
    texts = [t for t in _dev_texts() if t.strip()]
    D = loaded_service.embedder.embed(texts, use_store=False)
    bm = bank_matrix(loaded_service.embedder)
    _, T, B = trigger_matrices(loaded_service.embedder)
    banks = np.vstack([bm.vectors, T, B])
    bank_texts = bm.bank.texts
    sims = D @ banks.T
    i, j = np.unravel_index(np.argmax(sims), sims.shape)
    assert sims[i, j] <= 0.95, (f"dev item {texts[i][:80]!r} is a near-duplicate (cosine {sims[i, j]:.3f}) "
                                f"of bank item {(bank_texts + ['(trigger bank)'] * 100)[j][:80]!r}")


@pytest.mark.slow
def test_check_split_floors(loaded_service):
    from waluigi_desk.core.detectors.evaluate import eval_replies, load_dataset

    p = DEV / "replies.jsonl"
    if not p.exists():
        pytest.skip("data/dev is absent")
    res = eval_replies(loaded_service, load_dataset(p), split="check")
    assert res["n"] > 100
    comb = res["combined"]
    assert comb["auroc"] >= 0.85
    assert comb["auroc"] > res["detectors"]["markers"]["auroc"] + 0.1  # beats the lexical floor
    assert comb["recall_at_fpr_0.05"] >= 0.4
    assert comb["fpr"] <= 0.15
