"""The TF-IDF side on its own: xmcfit's TF-IDF scorer (xmcfit.model.TfidfScorer's layer, its pattern from
xmcfit.data.words.label_word_pattern) trained alone on EURLEX57K titles and citeulike-t, against the peers'
figures on the same TF-IDF. A question in minutes: whether the side can carry a dataset before it is
trained beside an encoder through the CLI (bench/peers.py, bench/eurlex.py do that).

Each dataset: the TF-IDF of the training split (text: the word vocabulary fitted on the training texts,
as `xmcfit train` fits it), the scorer over it (fan-in --fan-in, values from 0, no bias beside a per-label
bias), the squared hinge summed over labels in label chunks (xmcfit.sparse.chunked_loss), AdamW with 10 %
warm-up and a cosine, then P@k and PSP@k (A 0.55, B 1.5) on the dev split.

    python bench/tfidf_side.py [--data-root DIR] [--datasets EURLEX57K,citeulike-t] [--fan-in 64]
                               [--epochs 10] [--lr 0.01] [--seeds 0]

Prints one table, then `SUMMARY ...` last. Exits 0 with a message when the data is absent.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from common import SHARED_DATA

from xmcfit.data import load_split  # noqa: E402
from xmcfit.data.words import WordVocab, label_centroids, label_word_pattern, smooth_idf, tfidf_rows  # noqa: E402
from xmcfit.metrics import inverse_propensity, ranking_metrics  # noqa: E402
from xmcfit.plan.defaults import DEFAULTS  # noqa: E402
from xmcfit.sparse import FixedFanInLinear, chunked_loss  # noqa: E402

# dataset -> (text fields or None for bag-of-words, training points kept (0: all), batch)
SETTINGS = {"EURLEX57K": (["title"], 12_000, 32), "citeulike-t": (None, 0, 128)}
COLUMNS = ("P@1", "P@3", "P@5", "PSP@1", "PSP@5")


def tfidf_splits(root: Path, name: str):
    """(train TF-IDF, dev TF-IDF, train labels, dev labels) as xmcfit's TF-IDF side sees them."""
    fields, limit, _ = SETTINGS[name]
    train = load_split(root / name, "train", text_fields=fields, limit=limit or None)
    dev = load_split(root / name, "dev", text_fields=fields, label_vocab=train.label_vocab)
    if train.kind == "text":
        vocab = WordVocab.fit(train.texts, DEFAULTS.tfidf_max_words, DEFAULTS.tfidf_min_df)
        counts_train, counts_dev = vocab.counts(train.texts), vocab.counts(dev.texts)
    else:
        counts_train, counts_dev = train.features, dev.features
    idf = smooth_idf(counts_train)
    return tfidf_rows(counts_train, idf), tfidf_rows(counts_dev, idf), train.labels.tocsr(), dev.labels.tocsr()


def train_scorer(x, y, fan_in: int, epochs: int, lr: float, batch: int, seed: int) -> FixedFanInLinear:
    torch.manual_seed(seed)
    pattern = torch.from_numpy(label_word_pattern(label_centroids(x, y), fan_in, seed))
    layer = FixedFanInLinear(x.shape[1], y.shape[1], fan_in, seed=seed, indices=pattern)
    with torch.no_grad():
        layer.values.zero_()
        layer.bias.zero_()
    opt = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=DEFAULTS.classifier_weight_decay_adamw)
    per_epoch = math.ceil(x.shape[0] / batch)
    total, warm = epochs * per_epoch, max(1, int(0.1 * epochs * per_epoch))
    rng = np.random.default_rng(seed)
    for step in range(total):
        if step % per_epoch == 0:
            order = rng.permutation(x.shape[0])
        rows = order[(step % per_epoch) * batch:(step % per_epoch + 1) * batch]
        sub = y[rows]
        positives = torch.from_numpy(np.stack([np.repeat(np.arange(len(rows)), np.diff(sub.indptr)),
                                               sub.indices.astype(np.int64)], 1))
        mult = min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * step / total))
        for group in opt.param_groups:
            group["lr"] = lr * mult
        loss = chunked_loss(torch.from_numpy(x[rows].toarray()), layer, positives, reduction="sum_over_labels")
        opt.zero_grad()
        loss.backward()
        opt.step()
    return layer


@torch.no_grad()
def evaluate(layer: FixedFanInLinear, x, y, y_train) -> dict[str, float]:
    top = np.concatenate([layer(torch.from_numpy(x[s:s + 512].toarray())).topk(5, dim=1).indices.numpy()
                          for s in range(0, x.shape[0], 512)])
    metrics = ranking_metrics(y, top, inverse_propensity(y_train, y_train.shape[1], 0.55, 1.5))
    return {c: 100 * metrics[c] for c in COLUMNS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(SHARED_DATA))
    parser.add_argument("--datasets", default="EURLEX57K,citeulike-t")
    parser.add_argument("--fan-in", type=int, default=DEFAULTS.tfidf_fan_in)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=DEFAULTS.classifier_lr_adamw)
    parser.add_argument("--seeds", default="0")
    args = parser.parse_args(argv)
    root = Path(args.data_root)
    if not root.is_dir():
        print(f"skipped: no benchmark data at {root} (pass --data-root DIR)")
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"| dataset | seed | {' | '.join(COLUMNS)} | train s |")
    print("| --- | ---: |" + " ---: |" * (len(COLUMNS) + 1))
    summary = []
    for name in args.datasets.split(","):
        x_train, x_dev, y_train, y_dev = tfidf_splits(root, name)
        p1 = []
        for seed in (int(s) for s in args.seeds.split(",")):
            start = time.perf_counter()
            layer = train_scorer(x_train, y_train, args.fan_in, args.epochs, args.lr, SETTINGS[name][2], seed)
            seconds = time.perf_counter() - start
            m = evaluate(layer, x_dev, y_dev, y_train)
            p1.append(m["P@1"])
            print(f"| {name} | {seed} | {' | '.join(f'{m[c]:.2f}' for c in COLUMNS)} | {seconds:.0f} |", flush=True)
        summary.append(f"{name}_p1={np.mean(p1):.2f}")
    print(f"SUMMARY fan_in={args.fan_in} epochs={args.epochs} " + " ".join(summary))


if __name__ == "__main__":
    main()
