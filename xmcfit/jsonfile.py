"""Reading a JSON object from a file (run.json, memory.json, an encoder's config.json), each way it can fail
being one XmcfitError line that names the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xmcfit.errors import XmcfitError


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; a file that cannot be read, is not UTF-8, is not JSON or holds no object
    is one XmcfitError line."""
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise XmcfitError(f"{path}: cannot read ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise XmcfitError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise XmcfitError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(value, dict):
        raise XmcfitError(f"{path}: expected a JSON object")
    return value
