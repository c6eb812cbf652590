"""Accuracy lab: cache what does not change (encoder outputs), then sweep classifier heads in seconds.

    python bench/accuracy_lab.py cache --dataset EURLEX57K              # once: frozen MiniLM features
    python bench/accuracy_lab.py sweep --dataset EURLEX57K --seeds 0,1,2 \
        --grid "classifier=dense,sparse:256,sparse:64;lr=0.01,0.003" --epochs 8

`cache` encodes the training and evaluation split with the embedded all-MiniLM-L6-v2 (eval mode, no
gradients, mean pooling: exactly what `xmcfit train` feeds its head before fine-tuning) and stores the
pooled vectors under --cache-dir, keyed by dataset, encoder, text fields, sequence length and limit.
Bag-of-words datasets (Bibtex, Delicious) need no cache: their features are the input.

`sweep` trains one head per grid point and seed with xmcfit's own components (FixedFanInLinear,
chunked_loss, SETRewirer, the trainer's warm-up + cosine schedule and optimizers) on those inputs and
prints P@1/3/5 on the evaluation split as mean +- standard deviation over the seeds, at the epochs
listed in --report-epochs. For bag-of-words data the head includes xmcfit's BowEncoder, trained with it.
The grid is `key=v1,v2;key=v1` (the cross product); keys are the fields of HeadConfig below.
One table, then one `SUMMARY` line per grid point.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from common import REPO_ROOT, SHARED_DATA

from xmcfit.data import load_split  # noqa: E402
from xmcfit.metrics import inverse_propensity, ranking_metrics  # noqa: E402
from xmcfit.model import BowEncoder  # noqa: E402
from xmcfit.sparse import FixedFanInLinear, SETRewirer, chunked_loss  # noqa: E402
from xmcfit.train.schedules import cosine_decay, fraction_step, warmup_cosine  # noqa: E402

TEXT_SETTINGS = {"EURLEX57K": dict(fields=("title",), seq_len=32, limit=12_000, eval_split="dev")}
BOW_SETTINGS = {"Bibtex": dict(eval_split="test"), "Delicious": dict(eval_split="test")}
PROPENSITY = {"EURLEX57K": (0.55, 1.5), "Bibtex": (0.55, 1.5), "Delicious": (0.55, 1.5)}


@dataclass(frozen=True)
class HeadConfig:
    """One head to train on fixed inputs; every field is a grid key."""

    classifier: str = "dense"
    """"dense", or "sparse:K" for a fixed fan-in K classifier."""
    intermediate: int = 0
    """Width of a ReLU layer between the features and the classifier (0: none)."""
    optimizer: str = "adamw"
    """Classifier optimizer: adamw, sgd_momentum or sgd."""
    lr: float = 0.01
    """Classifier learning rate."""
    other_lr: float = 0.0
    """AdamW learning rate of the bow projection and the intermediate layer (0: the same as lr)."""
    weight_decay: float = 1e-4
    loss: str = "squared_hinge"
    reduction: str = "mean"
    """"mean" over batch x labels (chunked_loss as is), or "point": summed over labels, mean over the batch."""
    batch: int = 32
    epochs: int = 8
    warmup: float = 0.1
    dropout: float = 0.0
    bias_init: str = "uniform"
    """"uniform" (nn.Linear's), or a number: every bias starts at it (e.g. -1 for the hinge: negatives at 0 loss)."""
    rewire: str = "fraction:0.25"
    """"off", "fraction:F" (prune F of each row) or "threshold:T" (prune |w| < T), cosine-decayed to 0."""
    rewire_every: int = 300
    rewire_stop: float = 0.66
    bow_dim: int = 512
    """Projection width of the bag-of-words encoder (bow datasets only)."""
    tfidf: bool = False
    """Bag-of-words inputs: idf-weighted and L2-normalised rows instead of the raw values."""
    value_dtype: str = "float32"
    """Sparse classifier storage: float32, or bfloat16 (pure-bf16 values and state, Kahan-compensated updates)."""
    hybrid: str = "off"
    """Text datasets: "off" (the cached encoder features), "bow" (a TF-IDF bag-of-words branch over the hashed
    words of the same texts, alone) or "both" (the two concatenated)."""
    hybrid_buckets: int = 2**16


# -- data ------------------------------------------------------------------------------------------


def cache_key(dataset: str, fields: tuple[str, ...], seq_len: int, limit: int) -> str:
    raw = json.dumps([dataset, "all-MiniLM-L6-v2", "mean", list(fields), seq_len, limit])
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


@torch.no_grad()
def encode_texts(texts: list[str], seq_len: int, batch: int = 256) -> np.ndarray:
    """Mean-pooled all-MiniLM-L6-v2 vectors (n, 384) float32, in eval mode (no dropout)."""
    from transformers import AutoTokenizer

    from xmcfit.model import TextEncoder, load_pretrained_encoder, resolve_encoder_source

    source = resolve_encoder_source("all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, trust_remote_code=False)
    encoder = TextEncoder(load_pretrained_encoder(source), "mean", False).eval()
    out = []
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i:i + batch], max_length=seq_len, truncation=True, padding="longest",
                        return_tensors="pt")
        out.append(encoder(enc["input_ids"], enc["attention_mask"]).numpy())
    return np.concatenate(out).astype(np.float32)


def cache_text_features(data_root: Path, cache_dir: Path, dataset: str) -> Path:
    s = TEXT_SETTINGS[dataset]
    path = cache_dir / f"{dataset}-{cache_key(dataset, s['fields'], s['seq_len'], s['limit'])}.npz"
    if path.exists():
        return path
    train = load_split(data_root / dataset, "train", text_fields=s["fields"], limit=s["limit"] or None)
    test = load_split(data_root / dataset, s["eval_split"], text_fields=s["fields"], label_vocab=train.label_vocab)
    started = time.perf_counter()
    x_train, x_test = encode_texts(train.texts, s["seq_len"]), encode_texts(test.texts, s["seq_len"])
    print(f"encoded {len(train.texts) + len(test.texts)} texts in {time.perf_counter() - started:.0f} s")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, x_train=x_train, x_test=x_test, n_labels=train.n_labels,
             y_train=_csr_parts(train.labels), y_test=_csr_parts(test.labels))
    tmp.rename(path)
    return path


def _csr_parts(y: sp.csr_matrix) -> np.ndarray:
    return np.array([y.indptr.astype(np.int64), y.indices.astype(np.int64)], dtype=object)


def _csr(parts: np.ndarray, n_labels: int) -> sp.csr_matrix:
    indptr, indices = parts
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(indptr) - 1, n_labels))


@dataclass
class LabData:
    """Training and evaluation inputs (dense cached features or bag-of-words CSR) and labels."""

    x_train: np.ndarray | sp.csr_matrix
    y_train: sp.csr_matrix
    x_test: np.ndarray | sp.csr_matrix
    y_test: sp.csr_matrix
    n_labels: int
    inv_propensity: np.ndarray
    texts: tuple[list[str], list[str]] | None = None
    """Training and evaluation texts (text datasets), for the hashed bag-of-words branch."""

    @property
    def bow(self) -> bool:
        return sp.issparse(self.x_train)

    def hashed(self, buckets: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        from xmcfit.data.features import hashed_term_counts

        key = ("hashed", buckets)
        if key not in self.__dict__:
            self.__dict__[key] = tuple(hashed_term_counts(t, buckets) for t in self.texts)
        return self.__dict__[key]


def load_lab_data(data_root: Path, cache_dir: Path, dataset: str) -> LabData:
    a, b = PROPENSITY[dataset]
    if dataset in TEXT_SETTINGS:
        z = np.load(cache_text_features(data_root, cache_dir, dataset), allow_pickle=True)
        n = int(z["n_labels"])
        y_train = _csr(z["y_train"], n)
        s = TEXT_SETTINGS[dataset]
        train = load_split(data_root / dataset, "train", text_fields=s["fields"], limit=s["limit"] or None)
        test = load_split(data_root / dataset, s["eval_split"], text_fields=s["fields"], label_vocab=train.label_vocab)
        return LabData(z["x_train"], y_train, z["x_test"], _csr(z["y_test"], n), n,
                       inverse_propensity(y_train, n, a, b), (train.texts, test.texts))
    train = load_split(data_root / dataset, "train")
    test = load_split(data_root / dataset, BOW_SETTINGS[dataset]["eval_split"])
    return LabData(train.features, train.labels, test.features, test.labels, train.n_labels,
                   inverse_propensity(train.labels, train.n_labels, a, b))


def tfidf(x_train: sp.csr_matrix, x_test: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Both splits idf-weighted with the training split's document frequencies and L2-normalised per row."""
    df = np.bincount(x_train.indices, minlength=x_train.shape[1])
    idf = np.log((1 + x_train.shape[0]) / (1 + df)) + 1.0
    out = []
    for x in (x_train, x_test):
        x = sp.csr_matrix(x @ sp.diags(idf.astype(np.float32)))
        norms = np.sqrt(np.asarray(x.multiply(x).sum(1))).ravel()
        out.append(sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x, dtype=np.float32))
    return out[0], out[1]


# -- the head --------------------------------------------------------------------------------------


class Head(nn.Module):
    """[bow projection] -> dropout -> [intermediate ReLU] -> classifier, as xmcfit.model.XMCModel builds it."""

    def __init__(self, cfg: HeadConfig, in_dim: int, n_labels: int, bow: bool, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.bow = BowEncoder(in_dim, cfg.bow_dim) if bow else None
        d = cfg.bow_dim if bow else in_dim
        self.hybrid = cfg.hybrid if not bow else "off"
        self.branch = BowEncoder(cfg.hybrid_buckets, cfg.bow_dim, tfidf=True) if self.hybrid != "off" else None
        if self.branch is not None:
            d = cfg.bow_dim + (in_dim if self.hybrid == "both" else 0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.intermediate = nn.Sequential(nn.Linear(d, cfg.intermediate), nn.ReLU()) if cfg.intermediate else None
        d = cfg.intermediate or d
        if cfg.classifier == "dense":
            self.classifier: nn.Module = nn.Linear(d, n_labels)
        else:
            fan_in = int(cfg.classifier.split(":")[1])
            dtype = torch.bfloat16 if cfg.value_dtype == "bfloat16" else torch.float32
            self.classifier = FixedFanInLinear(d, n_labels, min(fan_in, d), seed=seed, dtype=dtype)
        if cfg.bias_init != "uniform":
            with torch.no_grad():
                self.classifier.bias.fill_(float(cfg.bias_init))

    def features(self, x) -> torch.Tensor:
        if self.bow is not None:
            x = self.bow(*x)
        if self.branch is not None:
            dense, words = x
            x = self.branch(*words) if self.hybrid == "bow" else torch.cat([dense, self.branch(*words)], dim=1)
        x = self.dropout(x)
        return self.intermediate(x) if self.intermediate is not None else x

    @property
    def value_dtype(self) -> torch.dtype:
        return self.classifier.values.dtype if isinstance(self.classifier, FixedFanInLinear) else torch.float32

    def scores(self, x) -> torch.Tensor:
        return self.classifier(self.features(x).to(self.value_dtype)).float()


def _batch_inputs(x, rows: np.ndarray, bow: bool):
    if isinstance(x, tuple):  # (cached features, hashed words): the hybrid head
        return _batch_inputs(x[0], rows, False), _batch_inputs(x[1], rows, True)
    if not bow:
        return torch.from_numpy(x[rows])
    sub = x[rows]
    return (torch.from_numpy(sub.indices.astype(np.int64)), torch.from_numpy(sub.indptr[:-1].astype(np.int64)),
            torch.from_numpy(sub.data.astype(np.float32)))


def _positives(y: sp.csr_matrix, rows: np.ndarray) -> torch.Tensor:
    sub = y[rows]
    counts = np.diff(sub.indptr)
    return torch.from_numpy(np.stack([np.repeat(np.arange(len(rows)), counts), sub.indices.astype(np.int64)], 1))


class _Optimizers:
    """The trainer's split: the classifier under cfg.optimizer, the rest (bow projection, intermediate) AdamW."""

    def __init__(self, cfg: HeadConfig, head: Head) -> None:
        cls_params = list(head.classifier.parameters())
        ids = {id(p) for p in cls_params}
        rest = [p for p in head.parameters() if id(p) not in ids]
        if cfg.value_dtype == "bfloat16":
            from xmcfit.sparse.lowprec_optim import LowPrecisionAdamW, LowPrecisionSGD

            if cfg.optimizer == "adamw":
                self.classifier = LowPrecisionAdamW(cls_params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                                    rounding="kahan")
            else:
                self.classifier = LowPrecisionSGD(cls_params, lr=cfg.lr, rounding="kahan",
                                                  momentum=0.9 if cfg.optimizer == "sgd_momentum" else 0.0)
        elif cfg.optimizer == "adamw":
            self.classifier = torch.optim.AdamW(cls_params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            momentum = 0.9 if cfg.optimizer == "sgd_momentum" else 0.0
            self.classifier = torch.optim.SGD(cls_params, lr=cfg.lr, momentum=momentum)
        self.opts = [self.classifier]
        if rest:
            self.opts.append(torch.optim.AdamW(rest, lr=cfg.other_lr or cfg.lr, weight_decay=cfg.weight_decay))
        self.param_groups = [g for o in self.opts for g in o.param_groups]
        self.state = self.classifier.state  # what SETRewirer reads

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.opts:
            o.step()


def _optimizer(cfg: HeadConfig, head: Head) -> _Optimizers:
    return _Optimizers(cfg, head)


def _rewirer(cfg: HeadConfig, head: Head, opt, total_steps: int, seed: int) -> SETRewirer | None:
    if not isinstance(head.classifier, FixedFanInLinear) or cfg.rewire == "off":
        return None
    mode, level = cfg.rewire.split(":")
    end = fraction_step(cfg.rewire_stop, total_steps)
    return SETRewirer(head.classifier, opt, fraction_schedule=lambda s: cosine_decay(s, end, float(level)),
                      interval=cfg.rewire_every, end_step=end, mode=mode, seed=seed + 1)


@torch.no_grad()
def evaluate(head: Head, data: LabData, x_test, k: int = 5, batch: int = 512) -> dict[str, float]:
    head.eval()
    tops = []
    n = (x_test[0] if isinstance(x_test, tuple) else x_test).shape[0]
    for i in range(0, n, batch):
        rows = np.arange(i, min(i + batch, n))
        tops.append(head.scores(_batch_inputs(x_test, rows, data.bow)).topk(k, dim=1).indices.numpy())
    head.train()
    m = ranking_metrics(data.y_test, np.concatenate(tops), data.inv_propensity)
    return {key: m[key] for key in ("P@1", "P@3", "P@5", "PSP@1", "PSP@5")}


def train_head(cfg: HeadConfig, data: LabData, seed: int, report_epochs: list[int],
               head: Head | None = None) -> dict[int, dict[str, float]]:
    """Train one head (a new one, or `head` in place); metrics at each epoch in `report_epochs` (1-based)."""
    x_train, x_test = data.x_train, data.x_test
    if data.bow and cfg.tfidf:
        x_train, x_test = tfidf(x_train, x_test)
    head = head if head is not None else Head(cfg, x_train.shape[1], data.n_labels, data.bow, seed)
    if head.branch is not None:
        from xmcfit.model import inverse_document_frequency

        words_train, words_test = data.hashed(cfg.hybrid_buckets)
        head.branch.set_idf(inverse_document_frequency(words_train, cfg.hybrid_buckets))
        x_train, x_test = (x_train, words_train), (x_test, words_test)
    opt = _optimizer(cfg, head)
    base_lrs = [g["lr"] for g in opt.param_groups]
    n = data.x_train.shape[0]
    per_epoch = math.ceil(n / cfg.batch)
    total = per_epoch * cfg.epochs
    warm = int(cfg.warmup * total)
    rewirer = _rewirer(cfg, head, opt, total, seed)
    scale = data.n_labels if cfg.reduction == "point" else 1.0
    results, step = {}, 0
    for epoch in range(cfg.epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        for i in range(0, n, cfg.batch):
            rows = order[i:i + cfg.batch]
            _optimizer_step(opt, base_lrs, warmup_cosine(step, total, warm), lambda: chunked_loss(
                head.features(_batch_inputs(x_train, rows, data.bow)).to(head.value_dtype), head.classifier,
                _positives(data.y_train, rows), loss=cfg.loss) * scale)
            step += 1
            if rewirer is not None:
                rewirer.step(step)
        if epoch + 1 in report_epochs:
            results[epoch + 1] = evaluate(head, data, x_test)
    return results


# -- end to end -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneConfig:
    """End-to-end fine-tuning after an optional linear-probe phase on the cached frozen features."""

    probe_epochs: int = 8
    """Epochs of head-only training on the cached features first (0: start from a random head)."""
    e2e_epochs: int = 2
    """End-to-end epochs (encoder + head)."""
    encoder_lr: float = 2e-5
    head_lr: float = 0.01
    """Head learning rate during the end-to-end phase."""
    warmup: float = 0.1
    dropout: float = 0.0
    """Dropout on the pooled features during the end-to-end phase."""


def _tokenize(tokenizer, texts: list[str], seq_len: int) -> dict[str, torch.Tensor]:
    enc = tokenizer(texts, max_length=seq_len, truncation=True, padding="longest", return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


@torch.no_grad()
def _encode(encoder, tokenizer, texts: list[str], seq_len: int, batch: int = 256) -> np.ndarray:
    encoder.eval()
    out = [encoder(**_tokenize(tokenizer, texts[i:i + batch], seq_len)).numpy() for i in range(0, len(texts), batch)]
    encoder.train()
    return np.concatenate(out)


def finetune(head_cfg: HeadConfig, ft: FinetuneConfig, data: LabData, texts: tuple[list[str], list[str]],
             seq_len: int, seed: int) -> dict[str, dict[str, float]]:
    """Probe (cached features), then fine-tune end to end; metrics after the probe and after each epoch."""
    from transformers import AutoTokenizer

    from xmcfit.model import TextEncoder, load_pretrained_encoder, resolve_encoder_source

    results: dict[str, dict[str, float]] = {}
    head = Head(replace(head_cfg, epochs=ft.probe_epochs), data.x_train.shape[1], data.n_labels, False, seed)
    if ft.probe_epochs:
        _fit_head(head, replace(head_cfg, epochs=ft.probe_epochs), data, seed)
        results["probe"] = evaluate(head, data, data.x_test)
    torch.manual_seed(seed)
    source = resolve_encoder_source("all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, trust_remote_code=False)
    encoder = TextEncoder(load_pretrained_encoder(source), "mean", False).train()
    head.dropout.p = ft.dropout
    groups = [{"params": list(encoder.parameters()), "lr": ft.encoder_lr, "weight_decay": 0.01},
              {"params": list(head.parameters()), "lr": ft.head_lr, "weight_decay": head_cfg.weight_decay}]
    opt = torch.optim.AdamW(groups)
    base_lrs = [g["lr"] for g in opt.param_groups]
    n = len(texts[0])
    total = math.ceil(n / head_cfg.batch) * ft.e2e_epochs
    warm, step = int(ft.warmup * total), 0
    rewirer = _rewirer(head_cfg, head, opt, total, seed)
    for epoch in range(ft.e2e_epochs):
        order = np.random.default_rng([seed, 100 + epoch]).permutation(n)
        started = time.perf_counter()
        for i in range(0, n, head_cfg.batch):
            rows = order[i:i + head_cfg.batch]
            _optimizer_step(opt, base_lrs, warmup_cosine(step, total, warm), lambda: chunked_loss(
                head.features(encoder(**_tokenize(tokenizer, [texts[0][r] for r in rows], seq_len))),
                head.classifier, _positives(data.y_train, rows), loss=head_cfg.loss))
            step += 1
            if rewirer is not None:
                rewirer.step(step)
        x_test = _encode(encoder, tokenizer, texts[1], seq_len)
        results[f"e2e{epoch + 1}"] = evaluate(head, data, x_test)
        print(f"  seed {seed} e2e epoch {epoch + 1}: {results[f'e2e{epoch + 1}']['P@1']:.4f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    return results


def _optimizer_step(opt: torch.optim.Optimizer, base_lrs: list[float], mult: float, loss_fn) -> None:
    """One step at learning rates base x mult: the loss loss_fn() builds, its backward, the update."""
    for group, lr in zip(opt.param_groups, base_lrs):
        group["lr"] = lr * mult
    loss = loss_fn()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _fit_head(head: Head, cfg: HeadConfig, data: LabData, seed: int) -> None:
    """Train `head` in place on the cached features (the loop of train_head without evaluation)."""
    train_head(cfg, data, seed, [], head=head)


# -- sweep -----------------------------------------------------------------------------------------


def parse_grid(text: str) -> list[dict[str, object]]:
    fields = {f.name: f.type for cls in (HeadConfig, FinetuneConfig) for f in dataclasses.fields(cls)}
    axes = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, _, values = part.partition("=")
        if key not in fields:
            sys.exit(f"--grid: unknown key {key!r}; known: {', '.join(fields)}")
        cast = {"int": int, "float": float, "bool": lambda v: v.lower() in ("1", "true", "yes")}.get(fields[key], str)
        axes.append([(key, cast(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def sweep(data: LabData, base: HeadConfig, grid: list[dict[str, object]], seeds: list[int],
          report_epochs: list[int]) -> list[tuple[dict, int, dict[str, tuple[float, float]], float]]:
    rows = []
    for point in grid:
        cfg = replace(base, **point)
        epochs = [e for e in report_epochs if e <= cfg.epochs] or [cfg.epochs]
        started = time.perf_counter()
        runs = [train_head(cfg, data, seed, epochs) for seed in seeds]
        seconds = (time.perf_counter() - started) / len(seeds)
        for e in epochs:
            stats = {m: (100 * float(np.mean([r[e][m] for r in runs])), 100 * float(np.std([r[e][m] for r in runs])))
                     for m in runs[0][e]}
            rows.append((point, e, stats, seconds))
            print(_row(point, e, stats, seconds), flush=True)
    return rows


def _row(point: dict, epoch: int, stats: dict[str, tuple[float, float]], seconds: float) -> str:
    what = " ".join(f"{k}={v}" for k, v in point.items()) or "base"
    cells = " ".join(f"{m} {mean:5.2f}+-{sd:4.2f}" for m, (mean, sd) in stats.items())
    return f"{what:<60} ep {epoch:>3}  {cells}  {seconds:6.1f} s/seed"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("cache", "sweep", "finetune"))
    parser.add_argument("--dataset", default="EURLEX57K", choices=sorted({*TEXT_SETTINGS, *BOW_SETTINGS}))
    parser.add_argument("--data-root", default=str(SHARED_DATA))
    parser.add_argument("--cache-dir", default=str(REPO_ROOT / "runs" / "lab-cache"))
    parser.add_argument("--grid", default="", help="key=v1,v2;key=v1 (HeadConfig fields)")
    parser.add_argument("--base", default="", help="key=v;key=v overriding HeadConfig defaults for every point")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--report-epochs", default="", help="Comma-separated epochs to evaluate (default: the last).")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.data_root)
    if not (root / args.dataset).is_dir():
        print(f"skipped: no {args.dataset} under {root} (pass --data-root DIR)")
        return
    if args.command == "cache":
        if args.dataset in TEXT_SETTINGS:
            print(cache_text_features(root, Path(args.cache_dir), args.dataset))
        return
    data = load_lab_data(root, Path(args.cache_dir), args.dataset)
    if args.command == "finetune":
        return run_finetune(args, root, data)
    [base_point] = parse_grid(args.base)
    base = replace(HeadConfig(), **base_point)
    seeds = [int(s) for s in args.seeds.split(",")]
    report = [int(e) for e in args.report_epochs.split(",") if e]
    print(f"{args.dataset}: {data.x_train.shape[0]} train x {data.x_train.shape[1]} inputs, "
          f"{data.x_test.shape[0]} eval points, {data.n_labels} labels; seeds {seeds}; base {base}")
    rows = sweep(data, base, parse_grid(args.grid), seeds, report)
    for point, epoch, stats, seconds in rows:
        what = ",".join(f"{k}={v}" for k, v in point.items()) or "base"
        print(f"SUMMARY {args.dataset} {what} epoch={epoch} p1={stats['P@1'][0]:.2f} p1_sd={stats['P@1'][1]:.2f} "
              f"p5={stats['P@5'][0]:.2f} psp5={stats['PSP@5'][0]:.2f} s_per_seed={seconds:.1f}")


def run_finetune(args, root: Path, data: LabData) -> None:
    s = TEXT_SETTINGS[args.dataset]
    train = load_split(root / args.dataset, "train", text_fields=s["fields"], limit=s["limit"] or None)
    test = load_split(root / args.dataset, s["eval_split"], text_fields=s["fields"], label_vocab=train.label_vocab)
    [head_point] = parse_grid(args.base)
    head_fields = {f.name for f in dataclasses.fields(HeadConfig)}
    seeds = [int(x) for x in args.seeds.split(",")]
    for point in parse_grid(args.grid):
        head_cfg = replace(HeadConfig(), **{k: v for k, v in {**head_point, **point}.items() if k in head_fields})
        ft = replace(FinetuneConfig(), **{k: v for k, v in {**head_point, **point}.items() if k not in head_fields})
        runs = [finetune(head_cfg, ft, data, (train.texts, test.texts), s["seq_len"], seed) for seed in seeds]
        for stage in runs[0]:
            p1 = [100 * r[stage]["P@1"] for r in runs]
            p5 = [100 * r[stage]["P@5"] for r in runs]
            print(f"SUMMARY finetune {head_cfg.classifier} {ft} stage={stage} p1={np.mean(p1):.2f} "
                  f"p1_sd={np.std(p1):.2f} p5={np.mean(p5):.2f}", flush=True)


if __name__ == "__main__":
    main()
