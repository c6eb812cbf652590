"""Input checks shared by the sparse layer and the chunked loss; each raises one ValueError naming the problem.

They run before any kernel is launched, so a bad batch fails with a readable message instead of an
out-of-bounds read on the device.
"""

import torch


def check_fan_in(in_features: int, fan_in: int) -> None:
    """Reject a fan-in that cannot be realised without duplicate columns."""
    if fan_in < 1:
        raise ValueError(f"fan_in={fan_in}: must be >= 1")
    if fan_in > in_features:
        raise ValueError(f"fan_in={fan_in}: must be <= in_features={in_features} (no duplicate columns per row)")


def check_input(x: torch.Tensor, in_features: int, check_finite: bool = True) -> None:
    """Check x is (batch, in_features) floating point without NaN.

    The NaN check is one `torch.isnan(x).any()`: a read of batch x in_features elements plus a device to
    host sync (on CUDA, a few microseconds; negligible next to the classifier itself).
    """
    if x.dim() != 2:
        raise ValueError(f"input has shape {tuple(x.shape)}: expected (batch, in_features={in_features})")
    if x.shape[1] != in_features:
        raise ValueError(f"input width {x.shape[1]}: expected in_features={in_features}")
    if not x.is_floating_point():
        raise ValueError(f"input dtype {x.dtype}: expected a floating point tensor")
    if check_finite and bool(torch.isnan(x).any()):
        raise ValueError("input contains NaN")


def check_positives(positives: torch.Tensor, batch: int, n_labels: int) -> None:
    """Check positives is a LongTensor (n_pos, 2) of [row, label] pairs inside (batch, n_labels)."""
    if positives.dim() != 2 or positives.shape[1] != 2:
        raise ValueError(f"positives has shape {tuple(positives.shape)}: expected (n_pos, 2) [row, label] pairs")
    if positives.dtype != torch.long:
        raise ValueError(f"positives dtype {positives.dtype}: expected torch.long")
    if positives.numel() == 0:
        return
    rows, labels = positives[:, 0], positives[:, 1]
    if bool((labels < 0).any()) or bool((labels >= n_labels).any()):
        raise ValueError(f"positives: label id out of range [0, {n_labels})")
    if bool((rows < 0).any()) or bool((rows >= batch).any()):
        raise ValueError(f"positives: row id out of range [0, {batch})")
