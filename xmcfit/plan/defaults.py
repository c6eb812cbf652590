"""The method's default numbers: every value the chooser writes into a plan without searching for it.

One frozen dataclass with a docstring per field saying where the number comes from (the published
method's released configuration, DESIGN.md "Reference settings", or this project's choice). The chooser
reads `DEFAULTS`; `xmcfit plan`'s --batch and --epochs default to it too. Pure Python. What the chooser
searches (fan-in ladder, micro-batch floor, ...) is its own policy and stays in xmcfit.plan.chooser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xmcfit.plan.schema import ClassifierOptimizer, InputWeighting, LossName, LossReduction, Pooling, RewireMode


@dataclass(frozen=True)
class MethodDefaults:
    """Defaults of one plan; each field is a number or rule the published method (or xmcfit) fixes."""

    # -- what `xmcfit plan` assumes unless told ---------------------------------------------------
    target_batch: int = 128
    """Effective batch (--batch) at most: the method's Amazon-3M setting (128 = 64 x accumulation 2)."""
    min_steps_per_epoch: int = 1000
    min_target_batch: int = 32
    """Smaller training sets take a smaller batch (a power of two, at least `min_target_batch`) so an epoch
    makes about `min_steps_per_epoch` optimizer steps: with few points the planner's epochs at batch 128
    are too few steps. EURLEX57K titles, 12,000 points, 5 epochs, frozen features + TF-IDF side: batch 32
    66.7 P@1, 64 65.8, 128 64.3; Bibtex (4,880 points) pinned at 64 gained 2 over 128 (bench/RESULTS.md)."""
    epochs: int = 10
    """Epochs (--epochs)."""
    pooling: Pooling = "mean"
    """Mean of the last hidden layer, one of the method's two poolings."""

    # -- encoder, its optimizer and schedule ------------------------------------------------------
    encoder_lr: float = 5e-5
    """AdamW learning rate of a BERT-base-sized (or larger) encoder: the top of the method's 1e-5 to 5e-5."""
    encoder_lr_small: float = 1e-4
    """AdamW learning rate of an encoder under `small_encoder_params` parameters: all-MiniLM-L6-v2 fine-tuned
    after a linear probe on EURLEX57K gained more at 1e-4 than at 5e-5 or 2e-5 (bench/RESULTS.md), without the
    TF-IDF side; beside it the rate is scaled by `tfidf_encoder_lr_scale`."""
    small_encoder_params: int = 50_000_000
    """Encoders below this many parameters (MiniLM, DistilBERT-small class) take `encoder_lr_small`."""
    bow_encoder_lr: float = 0.01
    """AdamW learning rate of a bag-of-words input projection: it starts random, so it learns at a head's
    rate, not a pretrained encoder's (at 5e-5 it stayed near its random start: Bibtex P@1 55.6 vs 60.9
    at 0.01, bench/RESULTS.md)."""
    probe_epochs: int = 2
    """Linear-probe warm start of a text encoder's run: epochs of the heads alone on frozen features first.
    Without it, fine-tuning under a random classifier distorts the pretrained features (EURLEX57K, MiniLM:
    P@1 38.6 after 2 epochs against 48.2 for a head on frozen features); after 2 or 8 probe epochs the
    same 2 end-to-end epochs gave 51.9 and 51.2 (bench/RESULTS.md), so 2: a probe epoch costs about the
    classifier's share of an end-to-end epoch, which dominates at millions of labels."""
    encoder_weight_decay: float = 0.01
    """AdamW weight decay of the encoder (the method's 0.01)."""
    warmup_fraction: float = 0.1
    """Linear warm-up over this fraction of the optimizer steps, then cosine decay to 0 (both optimizers)."""
    max_grad_norm: float = 1.0
    """Clip the encoder's gradient norm to this (0 = no clipping; the released code does not clip)."""
    eval_batch_max: int = 512
    """Evaluation batch: twice the micro-batch (no gradients are held), at most this many points."""
    dropout_small: float = 0.0
    """Dropout on a text encoder's pooled features below `large_dataset_labels` labels. The method uses 0.35 to
    0.6 over ~100 epochs; in short runs it only slows the head down (EURLEX57K, frozen MiniLM: 0.5 cost 2.5
    points of P@1 at 2 epochs, 0.3 cost 0.4 at 16; bench/RESULTS.md)."""
    dropout_large: float = 0.35
    """Dropout on the pooled features from `large_dataset_labels` labels on (the method's Amazon setting)."""
    dropout_bow: float = 0.5
    """Dropout on a bag-of-words projection (Bibtex, TF-IDF input, 10 epochs: P@1 64.2 with 0.5, 62.2 without)."""
    large_dataset_labels: int = 100_000
    """Where the dropout changes: the method's large (Amazon) sets take the lower end."""
    intermediate_dim: int = 4096
    """Width of the intermediate ReLU layer added at low fan-in (the method's Wiki10-31K setting)."""
    bow_fan_in: int = 32
    """Bag-of-words inputs beside the TF-IDF side start the sparse ladder at this fan-in, with the intermediate
    layer in front, and are not given the dense classifier (unless --classifier dense, --fan-in or
    --intermediate-dim is pinned): fan-in 32 + the 4096-wide layer was level with dense or above on every
    bag-of-words set we have (P@1 over dense, 3 seeds: Bibtex 1.012, Delicious 1.000, citeulike-t 1.008 at
    52,946 labels, in 0.44 of dense's time). From about 5,000 labels on it needs less memory than dense or
    fan-in 256 (52,946 labels: 0.67 of dense's peak); below, the layer's 2M weights add some 40 MiB. Without the side
    it was not (citeulike-t, --no-tfidf --fan-in 32: 9 P@1), nor on text, which keeps dense where it fits:
    there fan-in 32 with the layer kept 0.98 of dense (EURLEX57K, frozen features; bench/RESULTS.md)."""
    intermediate_below_fan_in_fraction: float = 0.5
    """The intermediate layer goes in front of a sparse classifier whose fan-in is below this fraction of the
    encoder's width, or below the largest fan-in of the ladder that the encoder allows (any fan-in the chooser
    lowered): EURLEX57K, frozen MiniLM, d=384: fan-in 256 needs none (48.3 P@1 without, 48.8 with), 128 gains
    6 points with it and 64 gains 17; unmeasured rungs between get it too."""

    # -- classifier -------------------------------------------------------------------------------
    classifier_lr_adamw: float = 0.01
    """Classifier learning rate with AdamW: the bottom of the method's 0.01 to 0.05."""
    classifier_lr_sgd_momentum: float = 0.03
    """Classifier learning rate with SGD + momentum 0.9 on the loss summed over labels: 0.98-0.99 of AdamW's
    P@1 on EURLEX57K (best of 0.003-0.1) and Bibtex (best 0.01, 0.99 at 0.03) (bench/RESULTS.md)."""
    classifier_lr_sgd: float = 0.3
    """Classifier learning rate with plain SGD: momentum 0.9's effective step (10x), for the same updates."""
    classifier_weight_decay_adamw: float = 1e-4
    """Classifier weight decay with AdamW (the method's 1e-4); the SGD fallbacks use none."""
    sgd_momentum: float = 0.9
    """Momentum of the sgd_momentum classifier optimizer."""
    loss: LossName = "squared_hinge"
    """Main loss: the method's squared hinge."""
    loss_reduction: LossReduction = "sum_over_labels"
    """Summed over the labels, averaged over the batch (xmcfit.sparse.chunked_loss): SGD steps keep a useful
    size at any number of labels (with the mean, an SGD step shrinks as 1/L), and AdamW's gradients stay far
    above its eps (at 3M labels the mean's are ~1e-9); AdamW's results are otherwise unchanged."""
    bow_input_weighting: InputWeighting = "tfidf"
    """Bag-of-words inputs are idf-weighted and L2-normalised (Bibtex P@1 +1.3 over raw values, bench/RESULTS.md)."""
    bias: bool = True
    """The classifier has a bias per label."""
    loss_workspace_target_bytes: int = 256 * 2**20
    """The loss chunk is the largest power of two whose workspace stays under this many bytes ..."""
    loss_chunk_range: tuple[int, int] = (1024, 131072)
    """... within these many labels per chunk (then at most the number of labels)."""

    # -- the TF-IDF side (xmcfit.model.TfidfScorer) -------------------------------------------------
    tfidf: bool = True
    """A TF-IDF scorer beside the encoder, its scores added to the classifier's: on citeulike-t it alone
    reaches 61.7 P@1 where the bag-of-words projection reached 41 (bench/RESULTS.md, "TF-IDF side")."""
    tfidf_fan_in: int = 64
    """Words per label: 64 covers every word of most labels' training documents at 52,946 labels."""
    tfidf_fallback_fan_ins: tuple[int, ...] = (32, 16)
    """Where nothing else on the chain fits, after every classifier move, the chooser keeps the side at
    these words per label (each label's heaviest) before it turns the side off."""
    tfidf_max_words: int = 100_000
    """Text: the vocabulary keeps at most this many words (as the TF-IDF peers in bench/peers.py)."""
    tfidf_min_df: int = 2
    """Text: a word enters the vocabulary when at least this many training texts contain it."""
    tfidf_lr_budget: float = 60.0
    tfidf_lr_range: tuple[float, float] = (0.005, 0.05)
    tfidf_lr_unknown_steps: float = 0.03
    """The side's AdamW rate is `tfidf_lr_budget` over the run's optimizer steps (its total travel, rate x
    steps, stays the same), within `tfidf_lr_range`; `tfidf_lr_unknown_steps` when the data's size is
    unknown. Batch 32, seed 0, P@1: EURLEX57K titles on frozen MiniLM features beside the classifier,
    1,875 steps: 0.01 64.2, 0.02 66.5, 0.03 67.0, 0.05 66.9, 0.08 66.2; 5,625 steps: 0.015 66.5, 0.03 65.5.
    citeulike-t, the side alone: 5,690 steps 0.01 62.7, 0.02 61.5; 2,845 steps 0.02 63.0. The one rate
    before (0.03) cost citeulike-t 4 points (`python -m xmcfit.docs`, "The TF-IDF side")."""
    tfidf_classifier_lr_scale: float = 0.3
    """Beside the side, the classifier learns at this fraction of its rate: the side then carries what
    TF-IDF knows and the classifier adds the rest. EURLEX57K titles, frozen MiniLM features, batch 32, 8
    epochs, seed 0: classifier/side 0.01/0.01 63.1 P@1, 0.01/0.03 65.3, 0.003/0.03 67.1 (seed 1: 67.6),
    0.001/0.03 66.7, 0.003/0.05 66.6 (bench/RESULTS.md, "TF-IDF side")."""
    tfidf_encoder_lr_scale: float = 0.2
    """Beside the side, a pretrained text encoder learns at this fraction of its rate (MiniLM: 2e-5): the
    side carries the lexical match fine-tuning used to add, and the less the encoder moves the better.
    EURLEX57K titles, 2 probe + 3 end-to-end epochs, 3 seeds: 1e-4 66.73 P@1 / 30.25 PSP@5, 2e-5 (this) 67.31
    / 30.92 (bench/RESULTS.md). Measured on MiniLM and 32-token titles only; the GPU setting's full texts are not."""
    tfidf_init_scale: float = 3.0
    tfidf_init_min_points_per_label: float = 10.0
    """The side's values start at each label's normalised TF-IDF centroid times `tfidf_init_scale` where the
    labels average at least `tfidf_init_min_points_per_label` training points (or the count is unknown), else
    from zeros: a centroid of one or two documents is those documents, a nearest-neighbour start that
    overfits. EURLEX57K titles (19 points per label; frozen MiniLM, side at 0.03, batch 32, 5 epochs, seeds
    0-2): x3 67.25 P@1 / 31.70 PSP@5, from zeros 67.43 / 31.21. citeulike-t (4.8 points per label, the side
    alone at 0.01): x3 60.9 P@1, from zeros 62.7. Between the two, the floor is a guess."""

    # -- SET rewiring -----------------------------------------------------------------------------
    rewiring_mode: RewireMode = "threshold"
    """Prune the connections whose |w| is below a threshold (the method's Amazon-670K and Wiki10-31K setting):
    on EURLEX57K it kept fan-in 256 of 384 level with dense, where pruning a fixed 25 % of every row cost
    4 % of P@1 (bench/RESULTS.md)."""
    rewiring_initial: float = 0.01
    """|w| threshold at the first rewiring, decaying by a cosine (the method's 0.01)."""
    rewiring_stop_fraction: float = 0.66
    """Rewiring stops after this fraction of the steps (the method: 66% of the epochs)."""
    rewiring_interval_steps: tuple[int, int] = (300, 1500)
    """Steps between rewirings at `rewiring_interval_labels` labels (Wiki10-31K 300, Amazon-3M 1,500) ..."""
    rewiring_interval_labels: tuple[int, int] = (30_000, 3_000_000)
    """... log-interpolated in the number of labels between these two, constant outside."""
    rewiring_chunk_rows: int = 8192
    """Label rows rewired at a time (bounds the rewiring workspace)."""

    # -- auxiliary objective ----------------------------------------------------------------------
    aux_min_labels: int = 100_000
    """The auxiliary objective is on from this many labels (where a sparse classifier starves the encoder of
    gradient early on; the method turns it on for Amazon-670K)."""
    aux_labels_per_cluster: int = 256
    """About this many labels per cluster, rounded to a power of two of clusters ..."""
    aux_clusters_range: tuple[int, int] = (256, 32768)
    """... within this many clusters."""
    aux_initial_weight: float = 0.4
    """α at step 0 of total loss (1 − α)·main + α·aux (the method's Amazon-670K 0.4)."""
    aux_cutoff_fraction: float = 0.5
    """α reaches 0 after this fraction of the steps."""

    def tfidf_lr(self, steps: int) -> float:
        """The TF-IDF side's learning rate for a run of `steps` optimizer steps (0: unknown)."""
        if steps < 1:
            return self.tfidf_lr_unknown_steps
        low, high = self.tfidf_lr_range
        return min(high, max(low, self.tfidf_lr_budget / steps))

    def tfidf_init(self, points_per_label: float) -> float:
        """The side's starting scale for data with `points_per_label` training points per label (0: unknown)."""
        few = 0 < points_per_label < self.tfidf_init_min_points_per_label
        return 0.0 if few else self.tfidf_init_scale

    def batch_for(self, n_points: int, n_devices: int = 1) -> int:
        """The effective batch for `n_points` training points (0: unknown, the full `target_batch`)."""
        batch = self.target_batch
        while n_points and batch > self.min_target_batch and n_points < batch * self.min_steps_per_epoch:
            batch //= 2
        return max(batch, n_devices)

    def classifier_lr(self, optimizer: ClassifierOptimizer) -> float:
        """The classifier's learning rate for its optimizer."""
        return {"adamw": self.classifier_lr_adamw, "sgd_momentum": self.classifier_lr_sgd_momentum,
                "sgd": self.classifier_lr_sgd}[optimizer]

    def text_encoder_lr(self, n_params: int) -> float:
        """The encoder's peak learning rate for a pretrained text encoder of `n_params` parameters."""
        return self.encoder_lr_small if n_params < self.small_encoder_params else self.encoder_lr

    def dropout(self, n_labels: int, bow: bool = False) -> float:
        """Dropout on the pooled features for a problem with `n_labels` labels."""
        if bow:
            return self.dropout_bow
        return self.dropout_large if n_labels >= self.large_dataset_labels else self.dropout_small

    def rewiring_interval(self, n_labels: int) -> int:
        """Optimizer steps between rewirings: log-interpolated between the two reference settings."""
        (lo_steps, hi_steps), (lo_labels, hi_labels) = self.rewiring_interval_steps, self.rewiring_interval_labels
        position = (math.log10(n_labels) - math.log10(lo_labels)) / (math.log10(hi_labels) - math.log10(lo_labels))
        return int(round(lo_steps + (hi_steps - lo_steps) * min(1.0, max(0.0, position))))

    def aux_clusters(self, n_labels: int) -> int:
        """Label clusters of the auxiliary head (0 = off)."""
        if n_labels < self.aux_min_labels:
            return 0
        lo, hi = self.aux_clusters_range
        return min(hi, max(lo, 2 ** math.ceil(math.log2(n_labels / self.aux_labels_per_cluster))))


DEFAULTS = MethodDefaults()
