"""Evaluate and query trained runs: ranking metrics on a labelled split, top-k labels for new inputs.

Numbers only: `evaluate_run` returns an EvalResult and `predict_labels` xmcfit.predictions.Predictions;
xmcfit.report draws them. Scores are computed by xmcfit.inference.predict_topk, which streams label
chunks, so no function here ever holds an n_points x n_labels matrix.

PSP@k and PSnDCG@k use Jain et al. (2016) propensities from the run's training label frequencies
with the dataset's A/B: explicit arguments, else the dataset profile the run matches, else 0.55/1.5.
PSnDCG@k follows pyxclib and napkinXC: each point's propensity-weighted DCG@k is divided by its IDCG
over min(k, |y|) positions, summed over points, and normalised by the same sum for the best ranking.

Scores are what the classifier was trained to output: a margin for the squared-hinge loss (targets
+1/-1; not a probability) and a logit for BCE, whose sigmoid is the probability the label applies.

This module is also callable: `xmcfit.evaluate(run_dir)` is `evaluate` below (xmcfit.callable_module).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmcfit.callable_module import make_callable
from xmcfit.data import XMCDataset, available_splits, eval_split, load_split
from xmcfit.errors import XmcfitError
from xmcfit.plan.schema import Plan
from xmcfit.inference import RUN_DATA_FIX, LoadedRun, predict_topk
from xmcfit.predictions import LabelScore, Predictions
from xmcfit.metrics import (DEFAULT_PROPENSITY_A, DEFAULT_PROPENSITY_B, inverse_propensity_from_counts,
                            ranking_metrics)

log = logging.getLogger(__name__)

DEFAULT_KS = (1, 3, 5)
# A data file whose label keys mostly miss the run's vocabulary is a different label space, not a
# split with a few unseen labels (EURLEX57K dev drops none; unseen tail labels drop a few percent).
MAX_DROPPED_LABEL_FRACTION = 0.5


@dataclass(frozen=True)
class Propensity:
    """Jain et al. A/B and where they came from ("--propensity-a/-b", "profile <name>" or "default")."""

    a: float
    b: float
    source: str


@dataclass(frozen=True)
class RunSummary:
    """What a results table shows about a run beside its metrics."""

    run_dir: str
    name: str
    encoder: str
    classifier_kind: str
    n_labels: int
    fan_in: int
    in_features: int
    precision: str
    value_dtype: str
    epochs_done: int | None
    predicted_peak_bytes: int | None
    measured_peak_bytes: int | None
    memory_device: str | None


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one run on one labelled split (all metrics are fractions in [0, 1])."""

    metrics: dict[str, float]
    """P@k, nDCG@k, PSP@k, PSnDCG@k, coverage@k for each k."""
    n_points: int
    split: str
    data_source: str
    propensity: Propensity
    run: RunSummary
    n_dropped_labels: int = 0
    """Label occurrences in the split that the run's label vocabulary does not know (scored as absent)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SCORE_KINDS = {"squared_hinge": "margin", "bce": "logit"}


def score_kind(plan: Plan) -> str:
    """What a run's scores are: "margin" (squared hinge: trained towards +1 / -1) or "logit" (BCE)."""
    return SCORE_KINDS[plan.classifier.loss]


def _check_probabilities(run: LoadedRun, probabilities: bool) -> None:
    if probabilities and run.plan.classifier.loss != "bce":
        raise XmcfitError(f"{run.run_dir} was trained with the {run.plan.classifier.loss} loss: its scores are "
                          "margins, not probabilities; plan with `xmcfit plan --loss bce` for probabilities")


def summarize_run(run: LoadedRun) -> RunSummary:
    plan, memory = run.plan, run.memory
    return RunSummary(
        run_dir=str(run.run_dir), name=run.run_dir.name, encoder=plan.model.encoder.name,
        classifier_kind=plan.classifier.kind, n_labels=plan.classifier.n_labels, fan_in=plan.classifier.fan_in,
        in_features=plan.classifier.in_features, precision=plan.precision, value_dtype=plan.classifier.value_dtype,
        epochs_done=run.info.get("epochs_done"),
        predicted_peak_bytes=memory.predicted_peak_bytes if memory else None,
        measured_peak_bytes=memory.measured_peak_bytes if memory else None,
        memory_device=memory.device if memory else None,
    )


def _matching_profile(run: LoadedRun):
    """The dataset profile named in the plan, else the one shipped profile with the run's labels and input."""
    from xmcfit.plan.profiles import load_dataset, profile_names

    if run.plan.inputs.dataset:
        try:
            return load_dataset(run.plan.inputs.dataset)
        except XmcfitError:
            log.info("plan names dataset %r, which has no profile", run.plan.inputs.dataset)
    kind, n_labels = run.plan.model.encoder.kind, run.plan.classifier.n_labels
    matches = [p for p in map(load_dataset, profile_names("datasets")) if p.n_labels == n_labels and p.input == kind]
    return matches[0] if len(matches) == 1 else None


def check_propensity_args(a: float | None, b: float | None) -> None:
    """One XmcfitError line for an A or B given that is not a finite number in range (before any scoring)."""
    for flag, value, ok in (("--propensity-a", a, lambda v: v > 0), ("--propensity-b", b, lambda v: v >= 0)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise XmcfitError(f"{flag} {value!r}: must be a finite number")
        if not ok(value):
            raise XmcfitError(f"{flag} {value!r}: must be {'> 0' if flag.endswith('a') else '>= 0'}")


def resolve_propensity(run: LoadedRun, a: float | None = None, b: float | None = None) -> Propensity:
    """A/B from the arguments (each overrides on its own), else the matching dataset profile, else 0.55/1.5."""
    profile = _matching_profile(run) if a is None or b is None else None
    base_a, base_b, source = DEFAULT_PROPENSITY_A, DEFAULT_PROPENSITY_B, "default"
    if profile is not None:
        base_a, base_b, source = profile.propensity_a, profile.propensity_b, f"profile {profile.name}"
    if a is not None or b is not None:
        source = "--propensity-a/-b" if a is not None and b is not None else f"flag + {source}"
    a = base_a if a is None else a
    b = base_b if b is None else b
    if not (math.isfinite(a) and math.isfinite(b) and a > 0 and b >= 0):
        raise XmcfitError(f"propensity A={a}, B={b}: need finite A > 0 and B >= 0 (--propensity-a, --propensity-b)")
    return Propensity(float(a), float(b), source)


def training_size(run: LoadedRun) -> int:
    """N, the number of training points: from run.json, else by re-reading the training split's labels."""
    if run.info.get("n_train"):
        return int(run.info["n_train"])
    data = run.info.get("data") or {}
    if not data.get("path"):
        raise XmcfitError(f"{run.run_dir}: run.json records neither n_train nor the training data path")
    train = load_split(data["path"], "train", text_fields=data.get("text_fields"), label_field=data.get("label_field"),
                       label_vocab=run.label_vocab, limit=data.get("limit"))
    return train.n_points


def check_label_space(run: LoadedRun, dataset: XMCDataset) -> None:
    """Raise one XmcfitError line when `dataset` does not share the run's label space."""
    run.plan.check_data(dataset, fix=RUN_DATA_FIX)
    n_kept = int(dataset.labels.nnz)
    n_total = n_kept + dataset.n_dropped_labels
    if n_total and dataset.n_dropped_labels / n_total > MAX_DROPPED_LABEL_FRACTION:
        raise XmcfitError(f"{dataset.source}: {dataset.n_dropped_labels} of {n_total} label occurrences are not "
                          f"in run {run.run_dir}'s label vocabulary; the data's label space differs from the run's")
    if dataset.n_dropped_labels:
        log.warning("%s: %d label occurrences unknown to the run are scored as absent",
                    dataset.source, dataset.n_dropped_labels)


def load_eval_data(run: LoadedRun, data: str | Path | None = None, split: str | None = None) -> tuple[XMCDataset, str]:
    """The labelled split to evaluate on and its name: the run's training data and `test` (else `dev`) by default.

    Labels are read through the run's label vocabulary, so ids mean what they meant in training.
    """
    if data is not None and not isinstance(data, (str, Path)):
        raise XmcfitError(f"data={data!r}: must be a path (str or pathlib.Path)")
    if split is not None and not isinstance(split, str):
        raise XmcfitError(f"split={split!r}: must be dev or test")
    recorded = run.info.get("data") or {}
    path = data if data is not None else recorded.get("path")
    if not path:
        raise XmcfitError(f"{run.run_dir}: run.json records no training data path; pass --data PATH")
    if not Path(path).exists():
        raise XmcfitError(f"{path}: no such data file or directory (pass --data PATH)")
    split = split or eval_split(path)
    dataset = load_split(path, split, text_fields=recorded.get("text_fields"), label_field=recorded.get("label_field"),
                         label_vocab=run.label_vocab)
    check_label_space(run, dataset)
    return dataset, split


def _split_of(dataset: XMCDataset) -> str:
    source = Path(dataset.source)
    found = available_splits(source) if source.is_file() else []
    return found[0] if found else "?"


def evaluate_run(run: LoadedRun, dataset: XMCDataset, ks: Sequence[int] = DEFAULT_KS, a: float | None = None,
                 b: float | None = None, *, split: str | None = None, batch_size: int | None = None) -> EvalResult:
    """Rank every label for every point of `dataset` (streamed) and compute the ranking metrics at `ks`."""
    check_label_space(run, dataset)
    if dataset.n_points == 0:
        raise XmcfitError(f"{dataset.source}: no points to evaluate")
    k_max = max(ks)
    top_ids, _ = predict_topk(run, dataset, k_max, batch_size=batch_size)  # (n_points, <= k_max)
    if top_ids.shape[1] < k_max:  # fewer labels than k: the missing ranks are misses
        pad = np.full((top_ids.shape[0], k_max - top_ids.shape[1]), -1, dtype=np.int64)
        top_ids = np.concatenate([top_ids, pad], axis=1)
    propensity = resolve_propensity(run, a, b)
    inv_p = inverse_propensity_from_counts(run.train_label_counts, training_size(run), propensity.a, propensity.b)
    metrics = ranking_metrics(dataset.labels, top_ids, inv_p, ks)
    return EvalResult(metrics=metrics, n_points=dataset.n_points, split=split or _split_of(dataset),
                      data_source=dataset.source, propensity=propensity, run=summarize_run(run),
                      n_dropped_labels=dataset.n_dropped_labels)


def evaluate_runs(run_dirs: Sequence[str | Path], data: str | Path | None = None, split: str | None = None,
                  a: float | None = None, b: float | None = None, device: str | None = None) -> list[EvalResult]:
    """Load and evaluate each run directory in turn (one model in memory at a time)."""
    from xmcfit.inference import load_run

    check_propensity_args(a, b)
    results = []
    for run_dir in run_dirs:
        run = load_run(run_dir, device=device)
        dataset, used_split = load_eval_data(run, data, split)
        results.append(evaluate_run(run, dataset, DEFAULT_KS, a, b, split=used_split))
        del run
    return results


def label_names(run: LoadedRun) -> list[str] | None:
    """Display names by label id: the run's vocabulary, else label_names.txt beside the training data."""
    if run.label_vocab is not None:
        return run.label_vocab.display_names()
    path = (run.info.get("data") or {}).get("path")
    if not path:
        return None
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    names_file = folder / "label_names.txt"
    if names_file.is_file():
        from xmcfit.data.io import read_text_file

        names = read_text_file(names_file).splitlines()
        if len(names) == run.plan.classifier.n_labels:
            return names
    return None


def _check_top_k(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise XmcfitError(f"--top-k={k!r}: must be an integer >= 1")


def predict_labels(run: LoadedRun, texts: Sequence[str], k: int, probabilities: bool = False) -> Predictions:
    """Top-k labels, best first, for each raw text (text runs); `probabilities` adds sigmoid(score) (BCE runs)."""
    from xmcfit.inference import predict_texts

    _check_top_k(k)
    if not texts:
        raise XmcfitError("no inputs: give TEXT arguments or --file")
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise XmcfitError(f"texts: {bad!r} is not a string; pass texts as str")
    _check_probabilities(run, probabilities)
    ids, scores = predict_texts(run, list(texts), k)
    return Predictions.from_arrays(ids, scores, label_names(run), probabilities)


def predict_dataset(run: LoadedRun, dataset: XMCDataset, k: int, probabilities: bool = False) -> Predictions:
    """Top-k labels, best first, for each point of a dataset (bag-of-words runs read features files)."""
    _check_top_k(k)
    _check_probabilities(run, probabilities)
    ids, scores = predict_topk(run, dataset, k)
    return Predictions.from_arrays(ids, scores, label_names(run), probabilities)


def predict_features(run: LoadedRun, features: Any, k: int, probabilities: bool = False) -> Predictions:
    """Top-k labels for each row of a (n_inputs, n_features) scipy.sparse matrix (bag-of-words runs)."""
    import scipy.sparse as sp

    from xmcfit.data import labels_csr

    if run.plan.model.encoder.kind != "bow":
        raise XmcfitError(f"{run.run_dir} was trained on texts: predict from a list of texts, not a feature matrix")
    x = sp.csr_matrix(features, dtype=np.float32)
    n_labels = run.plan.classifier.n_labels
    dataset = XMCDataset(texts=None, features=x, labels=labels_csr([[] for _ in range(x.shape[0])], n_labels),
                         n_labels=n_labels, n_features=int(x.shape[1]), label_names=None, source="<matrix>")
    return predict_dataset(run, dataset, k, probabilities)


# -- the Python API's loaded model (xmcfit.load) and evaluate (xmcfit.evaluate) ---------------------------

class Model:
    """A trained run loaded for scoring (`xmcfit.load`): `predict` gives the top-k labels of new inputs,
    `evaluate` the ranking metrics on a labelled split. `score_kind` says what scores are ("margin" for
    squared-hinge runs, "logit" for BCE runs, whose sigmoid is a probability: `probabilities=True`)."""

    def __init__(self, run: LoadedRun) -> None:
        self.run = run

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir

    @property
    def plan(self) -> Plan:
        return self.run.plan

    @property
    def score_kind(self) -> str:
        return score_kind(self.run.plan)

    @property
    def input_kind(self) -> str:
        """What the model reads: "text" (raw texts) or "bow" (bag-of-words feature rows)."""
        return self.run.plan.model.encoder.kind

    def predict(self, inputs: str | Sequence[str] | Any, k: int = 5, probabilities: bool = False) -> Predictions:
        """Top-k labels, best first, of each input: texts (one string: one input) for text runs, a scipy.sparse
        (n_inputs, n_features) matrix for bag-of-words runs. Returns Predictions: `.ids` (n, k) int64,
        `.scores` (n, k) float32, `.names` (n, k) str or None, `.probabilities` when asked (BCE runs);
        `predictions[i]` is input i's list of LabelScore."""
        import scipy.sparse as sp

        if sp.issparse(inputs):
            return predict_features(self.run, inputs, k, probabilities)
        if not isinstance(inputs, (str, list, tuple)):
            raise XmcfitError(f"inputs: {type(inputs).__name__}: give a text, a list of texts or a scipy.sparse "
                              "feature matrix")
        return predict_labels(self.run, [inputs] if isinstance(inputs, str) else list(inputs), k, probabilities)

    def predict_file(self, path: str | Path, k: int = 5, probabilities: bool = False) -> Predictions:
        """Top-k labels for each point of a data file (bag-of-words runs read XMC-format features)."""
        return predict_dataset(self.run, load_split(path), k, probabilities)

    def evaluate(self, data: str | Path | None = None, split: str | None = None, *,
                 propensity_a: float | None = None, propensity_b: float | None = None) -> EvalResult:
        """P@k, nDCG@k, PSP@k, PSnDCG@k (k = 1, 3, 5) on a labelled split (default: the run's test, else dev)."""
        check_propensity_args(propensity_a, propensity_b)
        dataset, used = load_eval_data(self.run, data, split)
        return evaluate_run(self.run, dataset, DEFAULT_KS, propensity_a, propensity_b, split=used)


def load(run_dir: str | Path, device: str | None = None) -> Model:
    """A finished run directory, verified (weights checksum) and loaded for scoring."""
    from xmcfit.inference import load_run

    return Model(load_run(run_dir, device=device))


def evaluate(run: str | Path | Model, data: str | Path | None = None, split: str | None = None, *,
             propensity_a: float | None = None, propensity_b: float | None = None,
             device: str | None = None) -> EvalResult:
    """Evaluate a run directory (or a loaded Model) on a labelled split, as `xmcfit eval` does per run."""
    model = run if isinstance(run, Model) else load(run, device=device)
    return model.evaluate(data, split, propensity_a=propensity_a, propensity_b=propensity_b)


make_callable(__name__, "evaluate")
