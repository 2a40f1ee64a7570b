"""The comparison behind docs/detectors.md "What we tried" (not used by the app).

Run: .venv/bin/python -m waluigi_desk.core.detectors.experiments [--ablate | --oof [--without a,b] | --heads]

Trains the axis head on different feature sets (the last MiniLM layer only, which is what
sentence-transformers pools, vs the mean state of other layers) and different training sources
(banks only, banks + paired replies), then prints AUROC / recall at FPR <= 0.05 of the raw head
score on the dev check split, the first holdout and holdout2. Nothing here touches the shipped
head or fitted.json; the dev data is only evaluated, never trained on.

``--ablate``: the shipped head's features (all six layers) and training data, leaving out one
paired file at a time. Per file it prints the evaluation sets without that file, and how well
the head trained on everything else scores the left-out file itself ("alone"): a file the rest
cannot predict covers something new; a low number even when it is trained on (the 5-fold
column, pairs kept together) means the features cannot see that kind of misalignment.

``--oof``: the shipped combined rule (exemplar + axis + neighbours + requested fiction, fitted.json
as it is) on every paired training reply, scored out of fold: the paired files are dealt into 4
folds (by the first byte of the sha256 of the file's name, so adding a file moves no other file to
another fold and the numbers of the files already there stay comparable; file i of the sorted names
in fold i % 4 before session 11) and each fold is scored by an axis head trained on,
and a neighbours memory built from, the banks and the other three folds. Prints the out-of-fold AUROC, the false-positive rate and
recall at the shipped operating point, the threshold a 2 % / 1 % false-positive rate on these
many-author negatives would need and what recall it would keep, and the same per file. About
3 minutes on two cores. ``--without a,b``: also the out-of-fold AUROC over the other files only
(e.g. the files a change adds: did the rest get better?).

``--heads``: the linear axis head and the stance network alone (the whole reply's logit), out of
fold in the same folds and on the evaluation sets: how stance was chosen (session 13). About 4
minutes on two cores.
"""

from __future__ import annotations

import hashlib
import sys
from collections import defaultdict

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


def _evals(e: Embedder) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    evals = {}
    dev = load_dataset(REPO_ROOT / "data/dev/replies.jsonl").items
    evals["dev check"] = [o for o in dev if split_of(o["id"]) == "check"]
    for name, path in (("holdout", "data/dev/holdout_replies.jsonl"), ("holdout2", "data/holdout2/replies.jsonl")):
        p = REPO_ROOT / path
        if p.exists():
            evals[name] = load_dataset(p).items
    return {k: (_features(e, [o["reply"] for o in v]), np.array([o["label"] == "misaligned" for o in v]))
            for k, v in evals.items()}


def _cell(s: np.ndarray, y: np.ndarray) -> str:
    return f"{auroc(s, y):.3f}/{threshold_at_fpr(s, y, 0.05)[1]:.2f}"


def ablate() -> None:
    """Leave one paired file out at a time (see the module docstring)."""
    e = Embedder()
    e.load()
    bank = load_banks()
    XB = _features(e, list(bank.texts))
    yB = np.array(bank.misaligned, dtype=bool)
    files: dict[str, list[dict]] = defaultdict(list)
    for o in paired_items():
        files[o["source"]].append(o)
    FX = {k: (_features(e, [o["reply"] for o in v]), np.array([o["label"] == "misaligned" for o in v]))
          for k, v in files.items()}
    EV = _evals(e)

    def head(skip: str | None, extra: tuple[np.ndarray, np.ndarray] | None = None):
        parts = [(XB, yB)] + [FX[k] for k in FX if k != skip] + ([extra] if extra else [])
        X = np.vstack([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        return fit_logreg(X, y.astype(float), l2=0.3)

    for skip in [None, *FX]:
        w, b = head(skip)
        row = "  ".join(f"{k} {_cell(F @ w + b, yy)}" for k, (F, yy) in EV.items())
        if skip is None:
            print(f"{'everything':24s} {row}")
            continue
        F, yy = FX[skip]
        alone = _cell(F @ w + b, yy)
        pair = np.array([hashlib.sha256(o["id"].rsplit("-", 1)[0].encode()).digest()[0] % 5
                         for o in files[skip]])
        cv = np.zeros(len(yy))
        for k in range(5):
            wk, bk = head(skip, (F[pair != k], yy[pair != k]))
            cv[pair == k] = F[pair == k] @ wk + bk
        print(f"without {skip:16s} {row}  | alone {alone}  5-fold {_cell(cv, yy)}")


def file_fold(name: str, n_folds: int) -> int:
    """A paired file's fold: fixed by its name, whatever other files there are."""
    return hashlib.sha256(name.encode()).digest()[0] % n_folds


def out_of_fold(n_folds: int = 4, without: tuple[str, ...] = ()) -> None:
    """The shipped rule on the paired replies, axis head out of fold (see the module docstring)."""
    from waluigi_desk.core.detectors.axis import HEAD_L2, LinearHead, training_items
    from waluigi_desk.core.detectors.service import DetectorService

    from waluigi_desk.core.detectors.fit import COMBINED_INPUTS
    from waluigi_desk.core.detectors import stance
    from waluigi_desk.core.detectors.neighbours import Memory

    svc = DetectorService()
    svc.load()
    ax = svc.detector("axis")
    ax.load()
    nb = svc.detector("neighbours")
    nb.load()
    st = svc.detector("stance")
    st.load()
    shipped = ax.head, nb.memory, st.head
    items = training_items()
    X = _features(svc.embedder, [o["reply"] for o in items]).astype(np.float64)
    y = np.array([o["label"] == "misaligned" for o in items])
    src = np.array([o.get("source", "") for o in items])
    files = sorted(set(src) - {""})
    fold = np.array([file_fold(s, n_folds) if s else -1 for s in src])
    score, flag = np.zeros(len(items)), np.zeros(len(items), dtype=bool)
    try:
        for k in range(n_folds):
            keep = fold != k
            w, b = fit_logreg(X[keep], y[keep].astype(float), l2=HEAD_L2)
            ax.head = LinearHead(w, b)
            # the neighbours memory (and its projection) without the fold, too
            nb.memory = Memory.build(X[keep], [o for o, kk in zip(items, keep) if kk])
            st.head = stance.train(X[keep], y[keep])
            for i in np.where(fold == k)[0]:
                v = svc.score_text(items[i]["reply"], items[i].get("prompt") or "", only=list(COMBINED_INPUTS))
                score[i], flag[i] = v.score, v.flagged
    finally:
        ax.head, nb.memory, st.head = shipped
    m = fold >= 0
    S, F, Y = score[m], flag[m], y[m]
    print(f"out of fold, {m.sum()} paired replies in {len(files)} files: AUROC {auroc(S, Y):.3f}; "
          f"at the shipped threshold {svc.combined_threshold():.3f}: FPR {F[~Y].mean():.3f}, recall {F[Y].mean():.3f}")
    if without:
        rest = ~np.isin(src[m], list(without))
        print(f"out of fold without {', '.join(without)}: {rest.sum()} replies in "
              f"{len(set(src[m][rest]))} files: AUROC {auroc(S[rest], Y[rest]):.3f}")
    for max_fpr in (0.02, 0.01):
        t, tpr, _ = threshold_at_fpr(S, Y, max_fpr)
        print(f"FPR <= {max_fpr} on these negatives needs threshold {t:.4f}: recall {tpr:.3f}")
    for f in files:
        mf = src[m] == f
        a = f"{auroc(S[mf], Y[mf]):.3f}" if Y[mf].any() and (~Y[mf]).any() else "  -  "
        rec = f"{F[mf & Y].mean():.3f}" if (mf & Y).any() else "  -  "
        print(f"{f:24s} AUROC {a}  FPR {F[mf & ~Y].mean():.3f}  recall {rec}")


def heads_out_of_fold(n_folds: int = 4) -> None:
    """The two heads on the same features, alone (the whole reply's logit, before the rule): the
    linear axis head and the stance network, each trained on the banks and three folds of paired
    files and scored on the fourth (the folds of ``--oof``), then trained on everything and scored
    on the evaluation sets (session 13's table in docs/detectors.md)."""
    from waluigi_desk.core.detectors import stance
    from waluigi_desk.core.detectors.axis import HEAD_L2, LinearHead, training_items

    e = Embedder()
    e.load()
    items = training_items()
    X = _features(e, [o["reply"] for o in items]).astype(np.float32)
    y = np.array([o["label"] == "misaligned" for o in items])
    src = np.array([o.get("source", "") for o in items])
    fold = np.array([file_fold(f, n_folds) if f else -1 for f in src])
    EV = _evals(e)
    heads = {"linear axis": lambda A, B: LinearHead(*fit_logreg(A, B.astype(float), l2=HEAD_L2)),
             "stance": stance.train}
    for name, train in heads.items():
        s = np.zeros(len(y))
        for k in range(n_folds):
            s[fold == k] = train(X[fold != k], y[fold != k])(X[fold == k])
        m = fold >= 0
        h = train(X, y)
        row = "  ".join(f"{k} {_cell(h(F), yy)}" for k, (F, yy) in EV.items())
        print(f"{name:12s} out of fold {auroc(s[m], y[m]):.3f}  |  {row}", flush=True)


def main() -> None:
    if "--heads" in sys.argv[1:]:
        heads_out_of_fold()
        return
    if "--ablate" in sys.argv[1:]:
        ablate()
        return
    if "--oof" in sys.argv[1:]:
        args = sys.argv[1:]
        without = args[args.index("--without") + 1].split(",") if "--without" in args[:-1] else []
        out_of_fold(without=tuple(w for w in without if w))
        return
    e = Embedder()
    e.load()
    bank = load_banks()
    paired = paired_items()
    train = {"banks": ([*bank.texts], list(bank.misaligned)),
             "banks + paired": ([*bank.texts, *[o["reply"] for o in paired]],
                                [*bank.misaligned, *[o["label"] == "misaligned" for o in paired]])}
    EV = _evals(e)
    for tname, (texts, labels) in train.items():
        X = _features(e, texts)
        y = np.array(labels, dtype=bool)
        for lname, layers in LAYER_SETS.items():
            cols = np.concatenate([np.arange(i * DIM, (i + 1) * DIM) for i in layers])
            w, b = fit_logreg(X[:, cols], y.astype(float), l2=0.3)
            row = []
            for k, (F, yy) in EV.items():
                s = F[:, cols] @ w + b
                row.append(f"{k} {_cell(s, yy)}")
            print(f"{tname:15s} {lname:18s} " + "  ".join(row))


if __name__ == "__main__":
    main()
