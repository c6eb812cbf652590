"""Data a real user has: non-finite feature values, truncated or mislabelled compressed files, text that is
not UTF-8, a blank line. Each is one line naming the file and the line, through the command line too."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xmcfit.cli import app
from xmcfit.data import load_split
from xmcfit.errors import XmcfitError

runner = CliRunner()
GOOD = ["4 5 3", "0,1 0:1 1:2", "2 3:1", "1 2:1", "0 4:1"]


def _xmc(tmp: Path, lines: list[str], name: str = "a_train.txt") -> Path:
    path = tmp / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e39", "-3.5e38"])
def test_non_finite_feature_values_are_refused_at_their_line(tmp_path, value):
    lines = GOOD.copy()
    lines[3] = f"1 2:{value}"
    with pytest.raises(XmcfitError, match=r"a_train.txt:4: feature value .*finite") as info:
        load_split(_xmc(tmp_path, lines))
    assert "\n" not in str(info.value)


def test_a_blank_line_is_reported_at_its_own_line_and_trailing_blank_lines_are_ignored(tmp_path):
    with pytest.raises(XmcfitError, match=r"a_train.txt:3: blank line"):
        load_split(_xmc(tmp_path, GOOD[:2] + [""] + GOOD[2:]))
    assert load_split(_xmc(tmp_path, GOOD + ["", ""], "b_train.txt")).n_points == 4


def test_a_truncated_gzip_file_names_the_file(tmp_path):
    packed = gzip.compress(("\n".join(GOOD * 1) + "\n").encode())
    path = tmp_path / "a_train.txt.gz"
    path.write_bytes(packed[: len(packed) - 12])
    with pytest.raises(XmcfitError, match=r"a_train.txt.gz:\d+: the compressed file ends early"):
        load_split(path)


def test_plain_text_named_gz_and_corrupt_xz_name_the_file(tmp_path):
    fake = tmp_path / "a_train.txt.gz"
    fake.write_text("\n".join(GOOD) + "\n")
    with pytest.raises(XmcfitError, match=r"a_train.txt.gz:1: not a valid gzip file"):
        load_split(fake)
    broken = tmp_path / "b_train.txt.xz"
    packed = lzma.compress(("\n".join(GOOD) + "\n").encode())
    broken.write_bytes(packed[:20] + b"\0" * 8 + packed[28:])
    with pytest.raises(XmcfitError, match=r"b_train.txt.xz:1: corrupt xz data"):
        load_split(broken)


def test_text_that_is_not_utf8_names_the_file_and_line(tmp_path):
    (tmp_path / "train_texts.txt").write_bytes("first\ncaf\xe9\n".encode("latin-1"))
    (tmp_path / "train_labels.txt").write_text("a\nb\n")
    with pytest.raises(XmcfitError, match=r"train_texts.txt:\d: not UTF-8 text \(byte 0xe9\)"):
        load_split(tmp_path)


def test_a_bad_data_file_is_one_line_in_every_command(tmp_path):
    packed = gzip.compress(("\n".join(GOOD) + "\n").encode())
    (tmp_path / "a_train.txt.gz").write_bytes(packed[: len(packed) // 2])
    for args in (["data", "stats", str(tmp_path)], ["plan", "--data", str(tmp_path), "--gpu-mem", "8G"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "Traceback" not in result.output and "Aborted" not in result.output
        assert result.stderr.startswith(f"Error: {tmp_path / 'a_train.txt.gz'}:") and len(result.stderr.splitlines()) == 1
