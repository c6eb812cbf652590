"""Reader for the Extreme Classification Repository text format (bag-of-words + integer labels).

First line `N F L` (points, features, labels); then one line per point, `l1,l2,... f:v f:v ...` with
0-based ids. An empty label field (line starts with a space) is a point without labels. Without the header
line (svmlight/libsvm multilabel files, e.g. scikit-learn's `dump_svmlight_file(..., multilabel=True)`,
which napkinXC reads) N, F and L are inferred from the records.

Why not scikit-learn's load_svmlight_file(multilabel=True) (evaluated for issue 13). Measured on a
2-core CPU with 200,000 points (50,000 features, 6.4M nonzeros, 84 MB): sklearn 5.5-6.0 s and 222 MiB
peak RSS (118 MiB of it importing sklearn); this reader 6.3-6.8 s and 627 MiB with Python lists, and
5.4-5.6 s and 106 MiB with the typed arrays it now uses (same matrices, checked on that file, Bibtex and
Delicious). So sklearn no longer saves time or memory, and it would cost the file:line errors (its
ValueError names no line, so a second parser would be needed to find it), the point limit (--limit),
.xz input, and strictness: it requires sorted unique feature ids per line and skips '#' comments and
qid: tokens that this reader rejects.
"""

from __future__ import annotations

import itertools
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from xmcfit.data.io import open_text, read_error


@dataclass(frozen=True, eq=False)
class XmcTextSplit:
    features: sp.csr_matrix  # (n_points, n_features) float32
    labels: sp.csr_matrix  # (n_points, n_labels) binary float32
    n_features: int
    n_labels: int
    has_header: bool = True
    """False when N, F and L were inferred from the records (a headerless svmlight file)."""

    def widened(self, n_features: int, n_labels: int) -> "XmcTextSplit":
        """The same points over at least `n_features` features and `n_labels` labels: a headerless test
        split seen against its training split, whose largest ids it may not reach."""
        f, l = max(self.n_features, n_features), max(self.n_labels, n_labels)
        grow = lambda m, cols: sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], cols))  # noqa: E731
        return XmcTextSplit(grow(self.features, f), grow(self.labels, l), f, l, self.has_header)


def _parse_header(path: Path, line: str) -> tuple[int, int, int]:
    parts = line.split()
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise read_error(path, 1, f"header {line.strip()!r}: expected 'n_points n_features n_labels'")
    n_points, n_features, n_labels = (int(p) for p in parts)
    return n_points, n_features, n_labels


def _is_record(line: str) -> bool:
    """A first line that is a record, not an `N F L` header: it has id:value features or comma-separated
    labels (scikit-learn's dump_svmlight_file(multilabel=True) writes no header), or starts with a space
    (a point without labels)."""
    return ":" in line or "," in line or line.startswith(" ")


@dataclass
class _Records:
    """The CSR arrays of the records read so far (typed arrays: module docstring)."""

    label_idx: array = field(default_factory=lambda: array("i"))
    label_ptr: array = field(default_factory=lambda: array("q", [0]))
    feat_idx: array = field(default_factory=lambda: array("i"))
    feat_val: array = field(default_factory=lambda: array("f"))
    feat_ptr: array = field(default_factory=lambda: array("q", [0]))

    @property
    def n_read(self) -> int:
        return len(self.label_ptr) - 1

    def add(self, path: Path, line_no: int, line: str, n_features: int | None, n_labels: int | None) -> None:
        """One record `l1,l2 f:v f:v`; ids checked against the header's sizes (>= 0 only without one)."""
        label_field, _, feature_field = line.rstrip("\r\n").partition(" ")
        try:
            if label_field:
                ids = [int(v) for v in label_field.split(",")]
                bad = next((v for v in ids if v < 0 or (n_labels is not None and v >= n_labels)), None)
                if bad is not None:
                    raise read_error(path, line_no, f"label id {bad} outside [0, {n_labels if n_labels is not None else 'inf'})")
                self.label_idx.extend(ids)
            for item in feature_field.split():
                f_str, sep, v_str = item.partition(":")
                f = int(f_str)
                if not sep or f < 0 or (n_features is not None and f >= n_features):
                    raise read_error(path, line_no, f"feature {item!r}: expected id:value with id in "
                                                    f"[0, {n_features if n_features is not None else 'inf'})")
                self.feat_idx.append(f)
                self.feat_val.append(float(v_str))
        except ValueError as exc:
            raise read_error(path, line_no, f"malformed record ({exc})") from exc
        self.label_ptr.append(len(self.label_idx))
        self.feat_ptr.append(len(self.feat_idx))


def _check_finite(path: Path, values: array, row_ptr: array, first_line: int) -> None:
    """Feature values must be finite float32 numbers: NaN, inf and values beyond float32 (1e39 becomes inf)
    would train to NaN and score NaN. One vectorised pass after reading; the error names the line."""
    vals = np.frombuffer(values, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(vals))
    if bad.size:
        point = int(np.searchsorted(np.frombuffer(row_ptr, dtype=np.int64), bad[0], side="right")) - 1
        raise read_error(path, point + first_line, f"feature value {float(vals[bad[0]])!r} (as float32): values "
                                                   "must be finite numbers within +-3.4e38")


def read_xmc_text(path: Path, limit: int | None = None) -> XmcTextSplit:
    """Stream `path` into CSR matrices; stops after `limit` points (header count then not enforced). A file
    without the `N F L` header (svmlight/libsvm multilabel, as scikit-learn's dump_svmlight_file writes it)
    is read too: N is the records counted, F and L one more than the largest feature and label id seen."""
    records = _Records()
    with open_text(path) as stream:
        first = stream.readline()
        if not first:
            raise read_error(path, 1, "empty file: expected header 'n_points n_features n_labels'")
        header = None if _is_record(first) else _parse_header(path, first)
        lines = stream if header else itertools.chain([first], stream)
        first_line = 2 if header else 1
        n_points = header[0] if header else None
        for line_no, line in enumerate(lines, start=first_line):
            if limit is not None and records.n_read >= limit:
                break
            if not line.strip():
                if n_points is None or records.n_read >= n_points:
                    continue  # blank lines after the last record (or anywhere, without a header to count)
                raise read_error(path, line_no, "blank line: expected 'labels features' (a point without labels "
                                                "starts with a space)")
            if n_points is not None and records.n_read >= n_points:
                raise read_error(path, line_no, f"more records than the header's n_points={n_points}")
            records.add(path, line_no, line, *(header[1:] if header else (None, None)))
        if n_points is not None and (limit is None or records.n_read < limit) and records.n_read != n_points:
            raise read_error(path, 1, f"header says n_points={n_points} but the file has {records.n_read} records")
    _check_finite(path, records.feat_val, records.feat_ptr, first_line)
    n_features, n_labels = header[1:] if header else (max(records.feat_idx, default=-1) + 1,
                                                      max(records.label_idx, default=-1) + 1)
    return _to_split(records, max(1, n_features), max(1, n_labels), header is not None)


def _to_split(r: _Records, n_features: int, n_labels: int, has_header: bool) -> XmcTextSplit:
    labels = sp.csr_matrix(
        (np.ones(len(r.label_idx), dtype=np.float32), np.asarray(r.label_idx, dtype=np.int32),
         np.asarray(r.label_ptr, dtype=np.int64)), shape=(r.n_read, n_labels))
    labels.sum_duplicates()
    labels.data[:] = 1.0
    features = sp.csr_matrix(
        (np.asarray(r.feat_val, dtype=np.float32), np.asarray(r.feat_idx, dtype=np.int32),
         np.asarray(r.feat_ptr, dtype=np.int64)), shape=(r.n_read, n_features))
    features.sum_duplicates()
    return XmcTextSplit(features=features, labels=labels, n_features=n_features, n_labels=n_labels,
                        has_header=has_header)
