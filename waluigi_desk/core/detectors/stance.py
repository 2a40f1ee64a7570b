"""``stance``: a small non-linear head on the axis' features, the axis' non-linear partner.

The axis is one direction (a linear head) in the six MiniLM layers' mean states. This detector
reads the same features through one hidden layer (GELU), so it can learn that a stance word means
one thing next to one topic and another next to another. Out of fold (the paired files in four
folds of files, each fold scored by heads trained without it: new authors), the head alone ranks
at AUROC 0.878 against the linear head's 0.847 (0.853 at its best l2), and every held-out set moved up (docs/detectors.md,
session 13). Its score has the axis' shape (the whole reply 0.75, its worst sentence 0.25) and its
evidence names the worst sentence and its nearest misaligned exemplar; the category comes from the
axis' per-category heads, read from the axis' file.

Training (``waluigi-desk fit --head``, from the same encoded items as the axis head and the
neighbours memory): three networks of ``HIDDEN`` units, seeds 0, 1 and 2, each ``EPOCHS`` epochs
of AdamW on the class-balanced logistic loss over standardised features. Their mean is itself one
network (the three hidden layers side by side, the output weights divided by three), so it is
shipped and run as one: ``resources/detectors/stance_head.npz`` (3.5 MB: the first layer stored as
float16), run with numpy in float32, about 1.5 ms for a reply of 11 sentences on one thread (torch is only
needed to train). Training runs on one thread with fixed seeds, so a rerun on
the same machine gives the same file; another CPU can differ in the last bits.
"""

from __future__ import annotations

import numpy as np

from waluigi_desk.core.detectors.axis import AxisDetector
from waluigi_desk.core.detectors.base import detectors_dir, register_detector_settings

HEAD_FILE = "stance_head.npz"
HIDDEN = 256
SEEDS = (0, 1, 2)
EPOCHS = 10
WEIGHT_DECAY = 0.01
DROPOUT = 0.2
LR = 1e-3
BATCH = 128
_C = float(np.sqrt(2.0 / np.pi))


def head_path():
    return detectors_dir() / HEAD_FILE


def gelu(h: np.ndarray) -> np.ndarray:
    """GELU, tanh form: the same function torch trains with (``approximate="tanh"``)."""
    return 0.5 * h * (1.0 + np.tanh(_C * (h + 0.044715 * h * h * h)))


class MlpHead:
    """``gelu(((A - mu) / sd) @ W1 + b1) @ w2 + b2`` for one row or a matrix of rows. The
    standardisation is folded into the first layer once, here, so a call is two matrix products.
    ``keep_unfolded`` False drops the unfolded first layer afterwards (7 MB in float32): the
    detector only runs the network; ``write`` and the tests of a trained head need it."""

    def __init__(self, W1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: float, mu: np.ndarray, sd: np.ndarray,
                 *, keep_unfolded: bool = True):
        self.W1, self.b1 = np.asarray(W1, dtype=np.float32), np.asarray(b1, dtype=np.float32)
        self.w2, self.b2 = np.asarray(w2, dtype=np.float32), float(b2)
        self.mu, self.sd = np.asarray(mu, dtype=np.float32), np.asarray(sd, dtype=np.float32)
        self._W = np.ascontiguousarray(self.W1 / self.sd[:, None])
        self._b = self.b1 - (self.mu / self.sd) @ self.W1
        if not keep_unfolded:
            self.W1 = None

    def __call__(self, A: np.ndarray) -> np.ndarray:
        return gelu(np.asarray(A, dtype=np.float32) @ self._W + self._b) @ self.w2 + self.b2


def train(X: np.ndarray, y: np.ndarray) -> MlpHead:
    """The seed ensemble on features ``X`` (rows of ``Encoded.layers``) and labels ``y``
    (True = misaligned), folded into one ``MlpHead``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        X = np.asarray(X, dtype=np.float32)
        mu, sd = X.mean(0), X.std(0) + 1e-6
        Xt = torch.tensor((X - mu) / sd)
        yt = torch.tensor(np.asarray(y, dtype=np.float32))
        pos = float(yt.mean())
        sw = torch.where(yt > 0.5, 0.5 / pos, 0.5 / (1 - pos))
        W1, b1, w2, b2 = [], [], [], []
        for seed in SEEDS:
            torch.manual_seed(seed)
            g = torch.Generator().manual_seed(seed)
            lin1, lin2 = torch.nn.Linear(X.shape[1], HIDDEN), torch.nn.Linear(HIDDEN, 1)
            net = torch.nn.Sequential(torch.nn.Dropout(DROPOUT), lin1, torch.nn.GELU(approximate="tanh"),
                                      torch.nn.Dropout(DROPOUT), lin2)
            opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
            net.train()
            for _ in range(EPOCHS):
                for idx in torch.randperm(len(yt), generator=g).split(BATCH):
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(
                        net(Xt[idx]).squeeze(1), yt[idx], reduction="none")
                    opt.zero_grad()
                    (loss * sw[idx]).mean().backward()
                    opt.step()
            W1.append(lin1.weight.detach().numpy().T)
            b1.append(lin1.bias.detach().numpy())
            w2.append(lin2.weight.detach().numpy()[0] / len(SEEDS))
            b2.append(float(lin2.bias.detach()[0]) / len(SEEDS))
    finally:
        torch.set_num_threads(threads)
    return MlpHead(np.hstack(W1), np.concatenate(b1), np.concatenate(w2), sum(b2), mu, sd)


def write(head: MlpHead, backend: str, digest: str) -> dict:
    """Write the shipped file: the network (its 2,304 x 768 first layer in standardised units as
    float16, 3.5 MB instead of 7; the detector runs it in float32) and what it was trained on."""
    np.savez(head_path(), W1=head.W1.astype(np.float16), b1=head.b1, w2=head.w2, b2=np.float32(head.b2),
             mu=head.mu, sd=head.sd, backend=np.array(backend), data=np.array(digest))
    return {"path": str(head_path()), "hidden": int(head.W1.shape[1]), "seeds": len(SEEDS)}


class StanceDetector(AxisDetector):
    name = "stance"
    description = "a small non-linear head (one hidden layer) on the axis' six MiniLM layers"
    votes_category = False  # the axis' category heads: the axis already votes with them

    def _load(self) -> None:
        super()._load()  # the axis file: its category heads name the category here too
        p = head_path()
        if not p.exists():
            raise FileNotFoundError(f"{p} is missing; run `waluigi-desk fit --head`.")
        with np.load(p) as z:
            self.head = MlpHead(z["W1"], z["b1"], z["w2"], float(z["b2"]), z["mu"], z["sd"], keep_unfolded=False)


register_detector_settings(StanceDetector.name, StanceDetector.description)
