"""The three ways a run can go wrong, kept apart so none is ever reported as another.

- `HarnessError`: bad input or environment. The CLI prints one line and exits with code 2; it is
  raised before anything is written.
- `TrialFailed`: a trial (or a test unit) failed for a reason of its own work: the loss raised, or
  something training produced went non-finite. It fails for good with its reason stored; the study
  goes on. It is never a HarnessError: a diverging hyperparameter set is not the user's mistake.
- An interruption (Ctrl-C, SIGTERM, a dead worker): not an exception type of ours; the trial is
  queued again (harness.studies.queue), at most MAX_REQUEUES times.

`RunFailed` ends a run that cannot be recorded because of its own work (a test unit failed, every
trial failed): one line naming what failed, exit code 1, nothing half-written.
"""

from __future__ import annotations


class HarnessError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class TrialFailed(Exception):
    """Fails the current trial with its reason stored, never the whole study.

    `error` is the cause alone (exception type and message), without the fold or hyperparameters, so
    a study can tell one error repeated by every trial from trials failing for reasons of their own.
    """

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error

    def __reduce__(self):  # both parts survive the trip back from a worker process (harness.jobs)
        return type(self), (str(self), self.error)


class LossNotFinite(TrialFailed):
    """The loss became NaN or infinite: fails the current trial, never the whole study."""


class TrainingNotFinite(TrialFailed):
    """The gradients, the weights or the embeddings a training produced went NaN or infinite."""


class LossRaised(TrialFailed):
    """The loss's own code raised: fails the current trial (traceback in the log), the study goes on."""


class RunFailed(Exception):
    """The run cannot be recorded because of its own work (not the input): one line, exit code 1."""
