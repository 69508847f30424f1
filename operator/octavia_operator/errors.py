"""The errors every layer raises: the ground floor, importing nothing of the operator.

A step (or an I/O adapter it calls) raises :class:`StepError` with a reason that becomes the reason
of its condition; :class:`TransientError` marks what goes away by itself and is retried with backoff.
"""
from __future__ import annotations

class StepError(Exception):
    """A failure the user must act on (bad input, missing Secret, forbidden, quota...).

    ``retry`` marks failures that the user fixes outside this resource (creating a Secret,
    raising a quota): the reconcile is retried after a while, without waiting for the drift
    timer. A bad spec is not retried: changing it triggers a reconcile anyway.
    """

    retry = False

    def __init__(self, reason: str, message: str, *, retry: bool | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        if retry is not None:
            self.retry = retry


class TransientError(StepError):
    """A failure that goes away by itself (5xx, timeout, unreachable): retried with backoff."""

    retry = True
