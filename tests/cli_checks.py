"""Assertions shared by the CLI tests."""

from __future__ import annotations


def one_error_line(result) -> str:
    """The one `Error: ...` line of a CliRunner result that failed as a user-facing error should: exit 2,
    nothing on stdout, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]
