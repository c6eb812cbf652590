"""CPU XMC peers on the real data: napkinXC PLT and omikuji (Parabel-like defaults) on TF-IDF features.

Datasets (from ../shared/data, or --data-root): EURLEX57K (raw text -> TF-IDF fitted on train; trained
on train, reported on dev because test is withheld), Bibtex and Delicious (bag-of-words; standard
train/test), citeulike-t (word counts, TF-IDF'd as xmcfit's side does: smooth idf from train, sublinear tf,
L2 rows; reported on dev). Metrics come from xmcfit.metrics with Jain et al. propensities (A=0.55, B=1.5) computed
from the training labels. Model size is the saved model directory on disk.

    python bench/peers.py [--data-root DIR] [--datasets EURLEX57K,Bibtex,Delicious,citeulike-t] [--threads 2] [--train-limit N]
                          [--text-field FIELD ...]
                          [--xmcfit-results RESULTS.json ...] [--xmcfit-bow-epochs N] [--json-out FILE]

Prints one table per dataset (xmcfit rows from --xmcfit-results files, as bench/eurlex.py writes
them, and with --xmcfit-bow-epochs bench/bow_defaults.py's rows on the bag-of-words sets: the planner's
defaults, --classifier sparse and SGD-momentum, through the CLI, its finished runs reused, beside the peers), then one `SUMMARY ...` line. Exits 0 with a message when the data is absent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from common import MIB, REPO_ROOT, SEED, SHARED_DATA

from xmcfit.data import XMCDataset, load_split  # noqa: E402
from xmcfit.data.words import smooth_idf, tfidf_rows  # noqa: E402
from xmcfit.metrics import inverse_propensity, ranking_metrics  # noqa: E402

KS = (1, 3, 5)
# Jain et al. 2016 defaults; none of these three datasets has a published A/B of its own.
PROPENSITY_A, PROPENSITY_B = 0.55, 1.5
# (directory, split to report on): EURLEX57K's test split is withheld and citeulike-t's is kept for final
# checks, so both report on dev.
DATASETS = {"EURLEX57K": "dev", "Bibtex": "test", "Delicious": "test", "citeulike-t": "dev"}
COLUMNS = ("P@1", "P@3", "P@5", "PSP@1", "PSP@3", "PSP@5")


def data_root_or_exit(arg: str | None) -> Path:
    """The data root, or print why the benchmark is skipped and exit 0 (no data on this machine)."""
    root = Path(arg) if arg else SHARED_DATA
    if not root.is_dir():
        print(f"skipped: no benchmark data at {root} (pass --data-root DIR)")
        sys.exit(0)
    return root


# -- TF-IDF for raw text (fitted on train only, so dev/test never leak into the idf) -----------------

_TOKEN = re.compile(r"\w\w+")


@dataclass(frozen=True)
class Tfidf:
    """Vocabulary (token -> column) and smooth idf per column, fitted on training texts."""

    vocab: dict[str, int]
    idf: np.ndarray


def fit_tfidf(texts: Sequence[str], min_df: int = 2, max_features: int = 100_000) -> Tfidf:
    """Keep tokens in >= min_df documents, the max_features most frequent by document frequency."""
    df: dict[str, int] = {}
    for text in texts:
        for token in set(_TOKEN.findall(text.lower())):
            df[token] = df.get(token, 0) + 1
    kept = sorted((t for t, n in df.items() if n >= min_df), key=lambda t: (-df[t], t))[:max_features]
    counts = np.array([df[t] for t in kept], dtype=np.float64)
    idf = np.log((1.0 + len(texts)) / (1.0 + counts)) + 1.0
    return Tfidf({t: i for i, t in enumerate(kept)}, idf.astype(np.float32))


def tfidf_features(model: Tfidf, texts: Sequence[str]) -> sp.csr_matrix:
    """(n_points, n_vocab) float32 CSR: sublinear tf x idf, rows L2-normalised; unknown tokens dropped."""
    indices: list[int] = []
    indptr = [0]
    for text in texts:
        indices.extend(i for t in _TOKEN.findall(text.lower()) if (i := model.vocab.get(t)) is not None)
        indptr.append(len(indices))
    x = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), np.asarray(indices, dtype=np.int32),
                       np.asarray(indptr, dtype=np.int64)), shape=(len(texts), len(model.vocab)))
    x.sum_duplicates()
    x.data = (1.0 + np.log(x.data)) * model.idf[x.indices]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ x
    return sp.csr_matrix(x, dtype=np.float32)


def bow_splits(root: Path, name: str, eval_split: str, train_limit: int | None = None,
               text_fields: Sequence[str] | None = None,
               ) -> tuple[sp.csr_matrix, sp.csr_matrix, XMCDataset, XMCDataset]:
    """(train features, eval features, train split, eval split); raw text is turned into TF-IDF.

    train_limit: the first N training points only, as `xmcfit train --limit N` reads them; text_fields:
    the JSON fields read as text (None: the reader's default, every text field)."""
    train = load_split(root / name, "train", limit=train_limit, text_fields=text_fields)
    test = load_split(root / name, eval_split, label_vocab=train.label_vocab, text_fields=text_fields)
    if train.kind == "text":
        tfidf = fit_tfidf(train.texts)
        return tfidf_features(tfidf, train.texts), tfidf_features(tfidf, test.texts), train, test
    if train.features.nnz and train.features.data.max() > 1:  # word counts (citeulike-t): TF-IDF them
        idf = smooth_idf(train.features)
        return tfidf_rows(train.features, idf), tfidf_rows(test.features, idf), train, test
    return train.features, test.features, train, test


# -- the peers ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PeerResult:
    """One method on one dataset: metrics (fractions), times and size."""

    dataset: str
    method: str
    metrics: dict[str, float]
    train_s: float
    predict_s: float
    model_bytes: int
    note: str = ""


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _label_lists(y: sp.csr_matrix) -> list[list[int]]:
    return [y.indices[y.indptr[i]: y.indptr[i + 1]].tolist() for i in range(y.shape[0])]


def run_napkinxc_plt(x_train, y_train, x_test, workdir: Path, threads: int) -> tuple[np.ndarray, float, float, int]:
    """napkinXC PLT with its defaults (hierarchical k-means tree, liblinear log loss)."""
    from napkinxc.models import PLT

    model_dir = workdir / "plt"
    model = PLT(str(model_dir), threads=threads, seed=SEED)
    tick = time.perf_counter()
    model.fit(x_train, _label_lists(y_train))
    train_s = time.perf_counter() - tick
    tick = time.perf_counter()
    pred = model.predict(x_test, top_k=max(KS))
    predict_s = time.perf_counter() - tick
    return _pad(pred), train_s, predict_s, _dir_bytes(model_dir)


def _write_xmc_text(path: Path, x: sp.csr_matrix, y: sp.csr_matrix) -> None:
    """XMC repository text format (omikuji reads only files): header `N F L`, `l1,l2 f:v ...` lines."""
    with open(path, "w") as fh:
        fh.write(f"{x.shape[0]} {x.shape[1]} {y.shape[1]}\n")
        for i in range(x.shape[0]):
            labels = ",".join(map(str, y.indices[y.indptr[i]: y.indptr[i + 1]]))
            lo, hi = x.indptr[i], x.indptr[i + 1]
            feats = " ".join(f"{j}:{v:.6g}" for j, v in zip(x.indices[lo:hi], x.data[lo:hi]))
            fh.write(f"{labels} {feats}".rstrip() + "\n")  # a point without features: no trailing space


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2: omikuji's Rust side draws progress bars there for every example."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def run_omikuji(x_train, y_train, x_test, workdir: Path, threads: int) -> tuple[np.ndarray, float, float, int]:
    """omikuji with its default hyper-parameters (Parabel-like: 3 balanced 2-means trees)."""
    import omikuji

    data_path = workdir / "omikuji_train.txt"
    _write_xmc_text(data_path, x_train, y_train)
    tick = time.perf_counter()
    with _quiet_stderr():
        model = omikuji.Model.train_on_data(str(data_path), omikuji.Model.default_hyper_param(), n_threads=threads)
    train_s = time.perf_counter() - tick
    model_dir = workdir / "omikuji_model"
    with _quiet_stderr():
        model.save(str(model_dir))
    x_test = sp.csr_matrix(x_test)
    tick = time.perf_counter()
    pred = []
    for i in range(x_test.shape[0]):
        lo, hi = x_test.indptr[i], x_test.indptr[i + 1]
        pairs = list(zip(x_test.indices[lo:hi].tolist(), x_test.data[lo:hi].tolist()))
        pred.append([label for label, _ in model.predict(pairs, top_k=max(KS))])
    predict_s = time.perf_counter() - tick
    return _pad(pred), train_s, predict_s, _dir_bytes(model_dir)


def _pad(pred: list[list[int]]) -> np.ndarray:
    """(n_points, max k) int64 ids, -1 where a method returned fewer than k labels (counted as misses)."""
    out = np.full((len(pred), max(KS)), -1, dtype=np.int64)
    for i, row in enumerate(pred):
        row = list(row)[: max(KS)]
        out[i, : len(row)] = row
    return out


PEERS: dict[str, Callable] = {"napkinXC PLT": run_napkinxc_plt, "omikuji": run_omikuji}


def bench_dataset(root: Path, name: str, threads: int, train_limit: int | None = None,
                  text_fields: Sequence[str] | None = None) -> list[PeerResult]:
    eval_split = DATASETS[name]
    tick = time.perf_counter()
    x_train, x_test, train, test = bow_splits(root, name, eval_split, train_limit, text_fields)
    features_s = time.perf_counter() - tick
    inv_p = inverse_propensity(train.labels, train.n_labels, PROPENSITY_A, PROPENSITY_B)
    results = []
    for method, fn in PEERS.items():
        with tempfile.TemporaryDirectory(prefix="xmcfit-peers-") as tmp:
            top_k, train_s, predict_s, size = fn(x_train, train.labels, x_test, Path(tmp), threads)
        metrics = ranking_metrics(test.labels, top_k, inv_p, KS)
        fields = f"text fields {', '.join(text_fields)}; " if text_fields and train.kind == "text" else ""
        note = (f"{fields}{x_train.shape[1]:,} features; {train.n_points:,} train / {test.n_points:,} {eval_split}; "
                f"features built in {features_s:.0f} s")
        results.append(PeerResult(name, method, metrics, train_s, predict_s, size, note))
    return results


# -- xmcfit rows and the table ------------------------------------------------------------------------

def xmcfit_rows(paths: Sequence[str], dataset: str) -> list[PeerResult]:
    """Rows for `dataset` from results files written by bench/eurlex.py (`{"dataset", "rows": [...]}`)."""
    rows = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        if data.get("dataset") != dataset:
            continue
        for row in data["rows"]:
            rows.append(PeerResult(dataset, row["method"], row["metrics"], row.get("train_s", float("nan")),
                                   row.get("predict_s", float("nan")), row.get("model_bytes", 0), row.get("note", "")))
    return rows


def xmcfit_bow_rows(root: Path, name: str, epochs: int, out: Path, seeds: Sequence[int]) -> list[PeerResult]:
    """xmcfit on a bag-of-words dataset through the CLI as bench/bow_defaults.py runs it (the same configs,
    flags and run directories: `xmcfit plan --data D --gpu-mem 16G --epochs N` and nothing else pinned for
    the planner's row, then `--classifier sparse` and SGD-momentum); runs bow_defaults finished under `out`
    are evaluated again, not retrained. Metrics are the mean over `seeds` (the spread is in the note)."""
    from bow_defaults import CONFIGS
    from xmcfit_runs import describe, mean_sd, run_seeds

    rows = []
    for label, extra in CONFIGS.items():
        runs = run_seeds(label, root / name, out / name, ["--gpu-mem", "16G", *extra], [], DATASETS[name], epochs,
                         list(seeds), reuse=True)
        size = (out / name / f"{label}-s{seeds[0]}" / "model.safetensors").stat().st_size
        metrics = {k: sum(r.metrics[k] for r in runs) / len(runs) for k in runs[0].metrics}
        p1, sd = mean_sd(runs, "P@1")
        rows.append(PeerResult(name, f"xmcfit {label} ({describe(runs[0].plan)})", metrics,
                               sum(r.train_s for r in runs) / len(runs), runs[0].predict_s, size,
                               f"{epochs} epochs, seeds {list(seeds)}: P@1 {p1:.2f} +- {sd:.2f}"))
    return rows


def format_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain fixed-width table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    rule = "-" * len(line(header))
    return "\n".join([title, rule, line(header), rule, *(line(r) for r in rows), rule])


def results_table(dataset: str, results: Sequence[PeerResult]) -> str:
    header = ("method", *COLUMNS, "train s", "model MiB")
    rows = [(r.method, *(f"{100 * r.metrics[c]:.2f}" for c in COLUMNS), f"{r.train_s:.1f}",
             f"{r.model_bytes / MIB:.1f}" if r.model_bytes else "-") for r in results]
    split = DATASETS.get(dataset, "test")
    return format_table(f"{dataset} (metrics in %, on {split}; 2 CPU threads)", header, rows)


def summary_key(dataset: str, method: str, metric: str) -> str:
    clean = re.sub(r"[^a-z0-9]+", "_", f"{dataset}_{method}_{metric}".lower()).strip("_")
    return clean


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="Folder holding EURLEX57K/, Bibtex/, Delicious/ [default: ../shared/data].")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="Comma-separated subset of the datasets.")
    parser.add_argument("--threads", type=int, default=2, help="Threads for each peer.")
    parser.add_argument("--xmcfit-results", action="append", default=[], help="results.json from bench/eurlex.py.")
    parser.add_argument("--json-out", help="Also write every row to this JSON file.")
    parser.add_argument("--xmcfit-bow-epochs", type=int, default=0,
                        help="Also train (or reuse) xmcfit's bow_defaults rows for this many epochs on the bag-of-words sets.")
    parser.add_argument("--out", default=str(REPO_ROOT / "runs" / "bow_defaults"),
                        help="Run directories for xmcfit (bench/bow_defaults.py's, so its finished runs are reused).")
    parser.add_argument("--seeds", default="0,1,2", help="Seeds of the xmcfit bag-of-words rows (mean reported).")
    parser.add_argument("--train-limit", type=int,
                        help="Train the peers on the first N training points only (match bench/eurlex.py --limit N).")
    parser.add_argument("--text-field", action="append", default=[],
                        help="Read only this JSON field as text for EURLEX57K (repeatable; match bench/eurlex.py's setting).")
    args = parser.parse_args(argv)
    root = data_root_or_exit(args.data_root)
    names = [n for n in args.datasets.split(",") if n]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        parser.error(f"--datasets: unknown {unknown[0]!r}; known: {', '.join(DATASETS)}")
    np.random.seed(SEED)
    everything: list[PeerResult] = []
    for name in names:
        results = bench_dataset(root, name, args.threads, args.train_limit, args.text_field or None)
        results += xmcfit_rows(args.xmcfit_results, name)
        if args.xmcfit_bow_epochs and name != "EURLEX57K":
            results += xmcfit_bow_rows(root, name, args.xmcfit_bow_epochs, Path(args.out),
                                       [int(x) for x in args.seeds.split(",") if x])
        everything += results
        print(results_table(name, results))
        if results and results[0].note:
            print(f"  ({results[0].note})")
        for r in results:
            if r.method.startswith("xmcfit") and r.note:
                print(f"  {r.method}: {r.note}")
        print()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps([asdict(r) for r in everything], indent=2) + "\n")
    summary = " ".join(f"{summary_key(r.dataset, r.method, m)}={100 * r.metrics[m]:.2f}"
                       for r in everything for m in ("P@1", "PSP@5"))
    print(f"SUMMARY {summary}")


if __name__ == "__main__":
    main()
