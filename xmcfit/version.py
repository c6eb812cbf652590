"""The xmcfit version: one place, read by the package, pyproject.toml (setuptools' attr:) and run.json."""

__version__ = "0.1.0"
