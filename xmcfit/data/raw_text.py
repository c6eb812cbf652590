"""Readers for raw-text inputs with label keys: line-aligned text/label files, and JSON lines.

Both return texts and per-point lists of label keys (strings); mapping keys to ids is the loader's job.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from xmcfit.data.io import open_text, read_error

LF_LABEL_FIELD = "target_ind"
LF_TEXT_FIELDS = ("title", "content")
EURLEX_LABEL_FIELD = "concepts"
EURLEX_TEXT_FIELDS = ("title", "header", "recitals", "main_body")


def read_text_pair(texts_path: Path, labels_path: Path, limit: int | None = None) -> tuple[list[str], list[list[str]]]:
    """One text per line in `texts_path`, space-separated label keys on the same line of `labels_path`."""
    texts: list[str] = []
    keys: list[list[str]] = []
    with open_text(texts_path) as text_stream, open_text(labels_path) as label_stream:
        line_no = 0
        while limit is None or line_no < limit:
            text, label_line = text_stream.readline(), label_stream.readline()
            line_no += 1
            if not text and not label_line:
                break
            if not text:
                raise read_error(texts_path, line_no, f"ends before {labels_path.name} (files must be line-aligned)")
            if not label_line:
                raise read_error(labels_path, line_no, f"ends before {texts_path.name} (files must be line-aligned)")
            texts.append(text.rstrip("\r\n"))
            keys.append(label_line.split())
    return texts, keys


def read_label_keys(labels_path: Path) -> list[list[str]]:
    """Only the label keys of a labels file (to build a vocabulary without reading texts)."""
    with open_text(labels_path) as stream:
        return [line.split() for line in stream]


def default_json_fields(path: Path, record: dict, line_no: int) -> tuple[tuple[str, ...], str]:
    """Guess (text_fields, label_field) from the first record: LF-* style or EURLEX57K style."""
    if LF_LABEL_FIELD in record:
        return tuple(f for f in LF_TEXT_FIELDS if f in record), LF_LABEL_FIELD
    if EURLEX_LABEL_FIELD in record:
        return tuple(f for f in EURLEX_TEXT_FIELDS if f in record), EURLEX_LABEL_FIELD
    raise read_error(path, line_no, f"no '{LF_LABEL_FIELD}' or '{EURLEX_LABEL_FIELD}' field: pass text_fields and label_field (--text-field/--label-field)")


def _field_text(path: Path, line_no: int, record: dict, name: str) -> str:
    if name not in record:
        raise read_error(path, line_no, f"missing text field '{name}'")
    value = record[name]
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(v.strip() for v in value)
    raise read_error(path, line_no, f"text field '{name}' is {type(value).__name__}: expected a string or a list of strings")


def _label_keys(path: Path, line_no: int, record: dict, name: str) -> list[str]:
    if name not in record:
        raise read_error(path, line_no, f"missing label field '{name}'")
    value = record[name]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise read_error(path, line_no, f"label field '{name}' must be a list of strings or integers")
    return [str(v) for v in value]


def read_jsonl(
    path: Path,
    text_fields: Sequence[str] | None = None,
    label_field: str | None = None,
    limit: int | None = None,
    labels_only: bool = False,
) -> tuple[list[str], list[list[str]]]:
    """Stream JSON lines; a point's text is its text fields joined by newlines (lists joined too)."""
    texts: list[str] = []
    keys: list[list[str]] = []
    fields = tuple(text_fields) if text_fields else None
    with open_text(path) as stream:
        for line_no, line in enumerate(stream, start=1):
            if limit is not None and len(keys) >= limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise read_error(path, line_no, f"invalid JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise read_error(path, line_no, "expected a JSON object per line")
            if fields is None or label_field is None:
                guessed_fields, guessed_label = default_json_fields(path, record, line_no)
                fields = fields or guessed_fields
                label_field = label_field or guessed_label
            keys.append(_label_keys(path, line_no, record, label_field))
            if not labels_only:
                texts.append("\n".join(_field_text(path, line_no, record, f) for f in fields))
    return texts, keys
