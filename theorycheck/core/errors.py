"""The two ways a check can refuse: a false claim, and input it cannot work with."""

from __future__ import annotations


class ClaimViolation(AssertionError):
    """Raised by an ``assert_<claim>`` helper when a claim did not hold; carries the Verdict."""

    def __init__(self, message: str, verdict=None):
        super().__init__(message)
        self.verdict = verdict


class InvalidArgument(ValueError):
    """Bad input: the message says what was expected, what was received, and the fix."""


def expect(condition: bool, *, expected: str, received: str, fix: str) -> None:
    """Raise ``InvalidArgument`` with the standard three-part message unless ``condition`` holds."""
    if not condition:
        raise InvalidArgument(f"expected {expected}, but got {received}. Fix: {fix}")
