"""How the TF-IDF side and the encoder's classifier combine, on cached frozen MiniLM features of EURLEX57K
titles (bench/accuracy_lab.py's cache): a question in seconds to a minute per row, before the CLI confirms it.

Each spec is `mode=...,key=value,...` (one training per spec, printed as one line):
  mode=side      the TF-IDF scorer alone (with a per-label bias)
  mode=head      a dense head on the frozen features alone
  mode=joint     both, their scores summed inside one loss (what `xmcfit train` does)
  mode=separate  each with its own loss; the scores summed at prediction with the head's weighted 0.25/0.5/1
  mode=both      the joint loss plus the side's own loss (the side with a per-label bias in both)
keys: lr (head), slr (side), batch, epochs, seed, init (the side starts at the labels' normalised TF-IDF
centroids times this; 0: zeros), drop (dropout on the features), wd (weight decay), restart (the warm-up +
cosine starts again after this many epochs, as a run's end-to-end phase restarts it after the probe's).

    python bench/tfidf_combine.py mode=joint,lr=0.003,slr=0.03,init=3,epochs=5 mode=side

Squared hinge, mean reduction, AdamW, 10 % warm-up + cosine, fan-in 64 (the planner's default). P@1, P@5,
PSP@5 (A 0.55, B 1.5) on dev.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch

from common import SHARED_DATA, REPO_ROOT
import accuracy_lab as lab
from xmcfit.data.words import WordVocab, label_centroids, label_word_pattern, label_word_values, smooth_idf, tfidf_rows
from xmcfit.metrics import ranking_metrics
from xmcfit.sparse import FixedFanInLinear, chunked_loss


def inputs():
    d = lab.load_lab_data(SHARED_DATA, REPO_ROOT / "runs" / "lab-cache", "EURLEX57K")
    vocab = WordVocab.fit(d.texts[0], 100_000, 2)
    counts_train, counts_dev = vocab.counts(d.texts[0]), vocab.counts(d.texts[1])
    idf = smooth_idf(counts_train)
    return d, tfidf_rows(counts_train, idf), tfidf_rows(counts_dev, idf)


def run(d, t_train, t_dev, mode: str, lr=0.01, slr=0.01, batch=32, epochs=8, seed=0, init=0.0, drop=0.0,
        wd=1e-4, restart=0) -> None:
    torch.manual_seed(seed)
    y, n_labels = d.y_train.tocsr(), d.n_labels
    head = torch.nn.Linear(d.x_train.shape[1], n_labels)
    centroid = label_centroids(t_train, y)
    pattern = label_word_pattern(centroid, 64, seed)
    side = FixedFanInLinear(t_train.shape[1], n_labels, 64, bias=mode in ("side", "separate", "both"), seed=seed,
                            indices=torch.from_numpy(pattern))
    with torch.no_grad():
        side.values.copy_(torch.from_numpy(label_word_values(centroid, pattern, init)))
        if side.bias is not None:
            side.bias.zero_()
    opt = torch.optim.AdamW([{"params": head.parameters(), "lr": lr}, {"params": side.parameters(), "lr": slr}],
                            weight_decay=wd)
    per_epoch = math.ceil(y.shape[0] / batch)
    total = epochs * per_epoch
    rng, features, started = np.random.default_rng(seed), torch.from_numpy(d.x_train), time.perf_counter()
    for step in range(total):
        if step % per_epoch == 0:
            order = rng.permutation(y.shape[0])
        rows = order[(step % per_epoch) * batch:(step % per_epoch + 1) * batch]
        phase = restart * per_epoch if restart and step >= restart * per_epoch else 0
        span = restart * per_epoch if restart and not phase else total - phase
        at, warm = step - phase, max(1, int(0.1 * span))
        mult = min(1.0, (at + 1) / warm) * 0.5 * (1 + math.cos(math.pi * at / span))
        for group, base in zip(opt.param_groups, (lr, slr)):
            group["lr"] = base * mult
        sub = y[rows]
        pos = torch.from_numpy(np.stack([np.repeat(np.arange(len(rows)), np.diff(sub.indptr)),
                                         sub.indices.astype(np.int64)], 1))
        f = torch.nn.functional.dropout(features[rows], drop, True)
        t = torch.from_numpy(t_train[rows].toarray())
        loss = {"side": lambda: chunked_loss(t, side, pos), "head": lambda: chunked_loss(f, head, pos),
                "joint": lambda: chunked_loss(f, head, pos, extra=(t, side)),
                "separate": lambda: chunked_loss(f, head, pos) + chunked_loss(t, side, pos),
                "both": lambda: chunked_loss(f, head, pos, extra=(t, side)) + chunked_loss(t, side, pos)}[mode]()
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - started
    for weight in ((0.25, 0.5, 1.0) if mode == "separate" else (1.0,)):
        top = []
        with torch.no_grad():
            for s in range(0, d.y_test.shape[0], 512):
                z_head = head(torch.from_numpy(d.x_test[s:s + 512])) if mode != "side" else 0.0
                z_side = side(torch.from_numpy(t_dev[s:s + 512].toarray())) if mode != "head" else 0.0
                top.append((weight * z_head + z_side).topk(5, dim=1).indices.numpy())
        m = ranking_metrics(d.y_test, np.concatenate(top), d.inv_propensity)
        print(f"{mode} lr={lr} slr={slr} batch={batch} epochs={epochs} init={init} drop={drop} seed={seed} restart={restart}"
              + (f" head x{weight}" if mode == "separate" else "")
              + f": P@1 {100 * m['P@1']:.2f} P@5 {100 * m['P@5']:.2f} PSP@5 {100 * m['PSP@5']:.2f} ({seconds:.0f} s)",
              flush=True)


def main(argv: list[str]) -> None:
    if not (SHARED_DATA / "EURLEX57K").is_dir():
        print(f"skipped: no EURLEX57K under {SHARED_DATA}")
        return
    d, t_train, t_dev = inputs()
    for spec in argv or ["mode=joint,lr=0.003,slr=0.03,init=3,epochs=5"]:
        kw = dict(kv.split("=", 1) for kv in spec.split(","))
        mode = kw.pop("mode")
        run(d, t_train, t_dev, mode, **{k: int(v) if k in ("batch", "epochs", "seed", "restart") else float(v)
                                        for k, v in kw.items()})


if __name__ == "__main__":
    main(sys.argv[1:])
