"""What the panels' background workers share.

Errors a user can act on (device, memory, failures inside torch, bad data) come back from a worker as a
:class:`Failed` result rather than an exception: the panel shows them as a plain notification, and superqt, which
takes a RuntimeError out of a generator (or an exception returned by it) for an aborted thread, would otherwise
never report the worker finished.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["USER_ERRORS", "Failed"]

USER_ERRORS = (RuntimeError, ValueError, MemoryError)
"""Exceptions a worker turns into a :class:`Failed` result."""


class Failed(NamedTuple):
    """What went wrong in a worker, in words for the user."""

    message: str
