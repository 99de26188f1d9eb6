"""Errors meant for the user: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class HarnessError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class LossNotFinite(HarnessError):
    """The loss became NaN or infinite: fails the current trial, never the whole study."""
