"""The one exception for bad usage: reported by the CLI in one line with exit status 2."""

from __future__ import annotations


class UsageError(Exception):
    """Bad usage: reported in one line (naming the bad value and the valid ones), exit status 2."""
