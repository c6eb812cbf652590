"""Linear-probe warm start: the heads train first on the frozen encoder's features, computed once.

Fine-tuning an encoder under a randomly initialised classifier over thousands of labels sends it
gradients that say little more than "score every label lower", and they distort the pretrained
features before the classifier has learnt anything (Kumar et al., ICLR 2022, "Fine-tuning can distort
pretrained features"; measured on EURLEX57K in bench/RESULTS.md). So a plan with `probe_epochs > 0`
first encodes every training point once with the pretrained encoder (eval mode, no gradients, the
plan's autocast), keeps the pooled vectors in host memory (n_points x hidden fp32), and trains the
classifier, intermediate layer and auxiliary head on them for `probe_epochs` epochs; the end-to-end
epochs then start from trained heads. The encoder gets no gradient and its optimizer skips it, so its
weights stay exactly the pretrained ones, and a resumed run recomputes the same features.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from xmcfit.data.torch_data import csr_rows_batch, positives_tensor
from xmcfit.errors import XmcfitError
from xmcfit.train.data import TrainData
from xmcfit.train.setup import TrainParts

log = logging.getLogger(__name__)


def pooled_bytes(n_points: int, hidden_size: int) -> int:
    """Host memory of the frozen features (fp32)."""
    return n_points * hidden_size * 4


@torch.no_grad()
def frozen_features(parts: TrainParts, data: TrainData, batch: int) -> torch.Tensor:
    """(n_points, hidden) fp32 on the CPU: the encoder's pooled output for every training point, in order.
    A batch that runs out of device memory is retried at half the size (said once per halving); the
    features do not depend on the batch."""
    encoder = parts.model.encoder
    n = data.dataset.n_points
    out = None
    was_training = encoder.training
    encoder.eval()
    try:
        start = 0
        while start < n:
            rows = np.arange(start, min(start + batch, n))
            try:
                pooled = _pool_rows(parts, data, rows)
            except torch.OutOfMemoryError:
                if batch == 1:
                    raise XmcfitError("out of device memory encoding one training point for the linear probe: "
                                      "plan with a shorter --seq-len, or --probe-epochs 0") from None
                batch //= 2
                log.warning("linear probe: out of device memory encoding the training points; batch %d", batch)
                if parts.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            if out is None:
                out = torch.empty(n, pooled.shape[1], dtype=torch.float32)
            out[start:start + len(rows)] = pooled
            start += len(rows)
    finally:
        encoder.train(was_training)
    log.info("linear probe: encoded %d training points (%d MiB in host memory)", n,
             pooled_bytes(n, out.shape[1]) >> 20 if out is not None else 0)
    return out if out is not None else torch.empty(0, 0)


def _pool_rows(parts: TrainParts, data: TrainData, rows: np.ndarray) -> torch.Tensor:
    """The pooled encoder output of `rows`, fp32 on the CPU, under the plan's autocast."""
    autocast = (torch.autocast(parts.device.type, dtype=parts.amp_dtype) if parts.amp_dtype
                else contextlib.nullcontext())
    inputs = {k: v.to(parts.device) for k, v in data.collate(rows).items() if k not in ("positives", "index")}
    with autocast:
        return parts.model.pool(inputs).float().cpu()  # (rows, hidden)


class ProbeBatches:
    """Collates micro-batches of frozen features: {"pooled", "positives", "index"} for row ids."""

    def __init__(self, pooled: torch.Tensor, data: TrainData) -> None:
        self.pooled = pooled
        self.labels = data.dataset.labels
        self.words = data.words

    def __call__(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        y = self.labels
        label_lists = [y.indices[y.indptr[r]: y.indptr[r + 1]] for r in rows]
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        batch = {"pooled": self.pooled[index], "positives": positives_tensor(label_lists), "index": index}
        return batch | csr_rows_batch(self.words, rows, "words") if self.words is not None else batch
