"""Errors meant for the user: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class HarnessError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class TrialFailed(HarnessError):
    """Fails the current trial with its reason stored, never the whole study.

    `error` is the cause alone (exception type and message), without the fold or hyperparameters, so
    a study can tell one error repeated by every trial from trials failing for reasons of their own.
    """

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error


class LossNotFinite(TrialFailed):
    """The loss became NaN or infinite: fails the current trial, never the whole study."""


class LossRaised(TrialFailed):
    """The loss's own code raised: fails the current trial (traceback in the log), the study goes on."""
