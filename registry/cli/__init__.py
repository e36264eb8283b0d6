"""The ``mbom`` command line.

The command modules attach themselves to the apps of :mod:`registry.cli.main`;
importing them here, not from main, keeps main below them (they import its apps
and options) instead of in a circle with them.
"""

from registry.cli import (  # noqa: F401
    cmd_behavior,
    cmd_bom,
    cmd_hf,
    cmd_lineage,
    cmd_models,
    cmd_ops,
    cmd_scan,
    cmd_store,
)
from registry.cli.main import app, main

__all__ = ["app", "main"]
