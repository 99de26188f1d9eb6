"""The loss zoo's own error: a loss name, declaration, plug-in path or hyperparameter that is not accepted.

The zoo knows nothing of the harness; the harness shows a LossError as one line, like its own errors.
"""

from __future__ import annotations


class LossError(ValueError):
    """A loss or its hyperparameters given in a way the zoo does not accept, explained in one line."""
