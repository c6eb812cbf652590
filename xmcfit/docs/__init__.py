"""Short documents shipped inside the package (the reasons of `xmcfit plan` point here).

`python -m xmcfit.docs` prints the accuracy-cost document; `read_doc(name)` returns any of them.
"""

from __future__ import annotations

from importlib.resources import files

ACCURACY_DOC = "accuracy.md"
"""The measured accuracy cost of each memory move and the recipe's defaults."""


def read_doc(name: str = ACCURACY_DOC) -> str:
    """The text of a document shipped in xmcfit/docs."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")
