"""The ``mbom`` command line."""

from registry.cli.main import app, main

__all__ = ["app", "main"]
