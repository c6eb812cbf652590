"""Load a finished run and score inputs: streaming top-k over label chunks, never points x labels.

A run directory is self-contained (plan, encoder config + tokenizer, weights, label vocabulary), so
`load_run` needs neither the original encoder nor the training data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from xmcfit.data import LabelVocab, XMCDataset
from xmcfit.atomic import file_sha256
from xmcfit.errors import XmcfitError
from xmcfit.model import XMCModel, build_model
from xmcfit.plan.schema import Plan
from xmcfit.sparse import FixedFanInLinear
from xmcfit.sparse.dispatch import get_backend
from xmcfit.device import pick_device
from xmcfit.rundir import MemoryReport, RunFiles, check_run_format, read_run_info

log = logging.getLogger(__name__)

RUN_DATA_FIX = "use data with the input and label space the run was trained on"
"""How a data/run mismatch line ends in eval and predict."""

# Labels scored per chunk at inference: (batch, chunk) fp32 scores, 8 MiB at batch 256.
SCORE_CHUNK_LABELS = 8192


@dataclass(frozen=True)
class LoadedRun:
    """A trained model and everything needed to score and evaluate it."""

    run_dir: Path
    plan: Plan
    model: XMCModel
    label_vocab: LabelVocab | None
    train_label_counts: np.ndarray
    """Training frequency of each label (n_labels,), for propensities."""
    info: dict[str, Any]
    """run.json: version, data options, status, epochs done."""
    memory: MemoryReport | None
    """memory.json: predicted vs measured peak memory (None before training finished)."""
    tokenizer: Any | None
    device: torch.device
    words: Any = None
    """The TF-IDF side's word vocabulary of a text run (xmcfit.data.words.WordVocab), else None."""


def load_run(run_dir: str | Path, device: str | None = None) -> LoadedRun:
    """Load a finished run for scoring; a missing/incomplete/incompatible run is one XmcfitError line."""
    if not isinstance(run_dir, (str, Path)):
        raise XmcfitError(f"run_dir={run_dir!r}: must be a path (str or pathlib.Path)")
    root = Path(run_dir)
    files = RunFiles(root)
    if not root.is_dir():
        raise XmcfitError(f"{root}: no such run directory")
    info = read_run_info(root)
    check_run_format(root, info)
    for needed in (files.plan, files.weights, files.label_counts):
        if not needed.exists():
            hint = " (training has not finished: `xmcfit train --resume`)" if needed == files.weights else ""
            raise XmcfitError(f"{root}: missing {needed.name}{hint}")
    plan = Plan.from_json(files.plan)
    dev = pick_device(device)
    text = plan.model.encoder.kind == "text"
    if text and not (files.encoder / "config.json").exists():
        raise XmcfitError(f"{root}: missing encoder/config.json")
    _verify_weights(files, info)
    model = build_model(plan, str(files.encoder) if text else None, pretrained=False)
    try:
        state = load_file(str(files.weights))
    except (OSError, SafetensorError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise XmcfitError(f"{files.weights}: unreadable ({first}); re-train, or resume from a checkpoint") from None
    try:
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise XmcfitError(f"{files.weights}: does not match the run's plan ({first})") from None
    model.to(dev).eval()
    tokenizer = None
    if text:
        from xmcfit.train.data import load_text_tokenizer

        tokenizer = load_text_tokenizer(str(files.encoder))
    vocab = LabelVocab.load(files.labels) if files.labels.exists() else None
    memory = MemoryReport.from_file(files.memory) if files.memory.exists() else None
    counts = _label_counts(files, plan.classifier.n_labels)
    words = None
    if text and plan.tfidf.enabled:
        from xmcfit.data.words import WordVocab

        if not files.tfidf_vocab.exists():
            raise XmcfitError(f"{root}: missing {files.tfidf_vocab.name} (the TF-IDF side's vocabulary)")
        words = WordVocab.load(files.tfidf_vocab)
    return LoadedRun(root, plan, model, vocab, counts, info, memory, tokenizer, dev, words)


def _verify_weights(files: RunFiles, info: dict[str, Any]) -> None:
    """One XmcfitError line unless model.safetensors has the SHA-256 the trainer recorded: in
    model.safetensors.sha256 (written before the weights were renamed into place) and in run.json once the
    run finished. Always checked, whatever run.json's status says; weights with no recorded checksum are not
    trusted (a flipped byte would otherwise score silently wrong)."""
    recorded = [info.get("weights_sha256")] if info.get("weights_sha256") else []
    if files.weights_checksum.is_file():
        try:
            recorded.append(files.weights_checksum.read_text(encoding="utf-8").split()[0])
        except (OSError, UnicodeDecodeError, IndexError):
            raise XmcfitError(f"{files.weights_checksum}: unreadable; re-train, or resume from a checkpoint") from None
    if not recorded:
        raise XmcfitError(f"{files.weights}: no SHA-256 recorded for it (neither {files.weights_checksum.name} nor "
                          "run.json's weights_sha256): the weights cannot be verified; re-train")
    if any(digest != file_sha256(files.weights) for digest in set(recorded)):
        raise XmcfitError(f"{files.weights}: does not match its recorded SHA-256 (the file is corrupted); restore "
                          "it from a backup or re-train")


def _label_counts(files: RunFiles, n_labels: int) -> np.ndarray:
    """label_counts.npy: a finite, non-negative number per label; anything else is one XmcfitError line."""
    try:
        counts = np.load(files.label_counts, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise XmcfitError(f"{files.label_counts}: unreadable ({first}); re-train to write it again") from None
    if (not isinstance(counts, np.ndarray) or counts.shape != (n_labels,) or counts.dtype.kind not in "iuf"
            or not np.all(np.isfinite(counts)) or np.any(counts < 0)):
        raise XmcfitError(f"{files.label_counts}: expected {n_labels} finite non-negative label counts, got "
                          f"{getattr(counts, 'dtype', '?')} of shape {getattr(counts, 'shape', '?')}; re-train")
    return counts


def _chunk_scores(classifier: torch.nn.Module, feats: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Scores of labels [start, stop) for every row of feats: (batch, stop - start) fp32."""
    if isinstance(classifier, FixedFanInLinear):
        backend = get_backend(feats.device)
        bias = classifier.bias[start:stop] if classifier.bias is not None else None
        values = classifier.values[start:stop]
        out_t = backend.logits_t(feats.to(torch.float32), values, classifier.indices[start:stop], bias)  # (c, b)
        return out_t.t().float()
    weight = classifier.weight[start:stop].float()  # (c, d)
    out = feats.float() @ weight.t()  # (b, c)
    if classifier.bias is not None:
        out += classifier.bias[start:stop].float()
    return out


@torch.no_grad()
def topk_from_features(classifier: torch.nn.Module, feats: torch.Tensor, k: int,
                       chunk_labels: int = SCORE_CHUNK_LABELS,
                       tfidf: tuple[FixedFanInLinear, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top-k over label chunks: ((batch, k) scores, (batch, k) ids), holding (batch, chunk + k).
    tfidf: (the TF-IDF scorer's layer, its (batch, n_words) input rows), whose scores are added."""
    n_labels = classifier.values.shape[0] if isinstance(classifier, FixedFanInLinear) else classifier.weight.shape[0]
    k = min(k, n_labels)
    best_s = torch.full((feats.shape[0], 0), float("-inf"), device=feats.device)
    best_i = torch.zeros((feats.shape[0], 0), dtype=torch.long, device=feats.device)
    for start in range(0, n_labels, chunk_labels):
        stop = min(n_labels, start + chunk_labels)
        scores = _chunk_scores(classifier, feats, start, stop)  # (b, c)
        if tfidf is not None:
            scores += _chunk_scores(tfidf[0], tfidf[1], start, stop)
        ids = torch.arange(start, stop, device=feats.device).expand_as(scores)
        cand_s = torch.cat([best_s, scores], 1)  # (b, k + c)
        cand_i = torch.cat([best_i, ids], 1)
        best_s, pos = cand_s.topk(min(k, cand_s.shape[1]), dim=1)
        best_i = cand_i.gather(1, pos)
    return best_s, best_i


def _batches(run: LoadedRun, dataset: XMCDataset, batch_size: int):
    from xmcfit.data.torch_data import BowCollator, TextCollator, XMCTorchDataset, csr_rows_batch

    torch_ds = XMCTorchDataset(dataset)
    collate = (TextCollator(run.tokenizer, run.plan.model.seq_len) if dataset.kind == "text" else BowCollator())
    words = run.words.counts(dataset.texts) if run.words is not None else None  # (n_points, n_vocab) CSR
    for start in range(0, dataset.n_points, batch_size):
        rows = range(start, min(dataset.n_points, start + batch_size))
        batch = collate([torch_ds[r] for r in rows])
        yield batch | csr_rows_batch(words, rows, "words") if words is not None else batch


def predict_topk(run: LoadedRun, dataset: XMCDataset, k: int,
                 batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k label ids (n_points, k) int64, best first, and their float32 scores."""
    run.plan.check_data(dataset, fix=RUN_DATA_FIX)
    batch_size = batch_size or run.plan.training.eval_batch
    all_ids, all_scores = [], []
    with torch.no_grad():
        for batch in _batches(run, dataset, batch_size):
            batch = {key: v.to(run.device) for key, v in batch.items()}
            feats = run.model.features(batch).float()  # (b, d)
            tfidf = run.model.tfidf
            scores, ids = topk_from_features(run.model.classifier, feats, k,
                                             tfidf=(tfidf.layer, tfidf.inputs(batch)) if tfidf is not None else None)
            all_ids.append(ids.cpu().numpy())
            all_scores.append(scores.cpu().numpy().astype(np.float32))
    if not all_ids:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    return np.concatenate(all_ids).astype(np.int64), np.concatenate(all_scores)


def predict_texts(run: LoadedRun, texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k for raw texts (text runs only)."""
    from xmcfit.data import labels_csr

    if run.plan.model.encoder.kind != "text":
        raise XmcfitError(f"{run.run_dir}: trained on bag-of-words input; predict from a data file instead")
    n_labels = run.plan.classifier.n_labels
    ds = XMCDataset(texts=list(texts), features=None, labels=labels_csr([[] for _ in texts], n_labels),
                    n_labels=n_labels, n_features=0, label_names=None, source="<texts>")
    return predict_topk(run, ds, k)
