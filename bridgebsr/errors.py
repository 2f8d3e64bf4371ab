"""Errors a user can act on. The CLI prints their message as one line and exits 1."""


class BridgeError(Exception):
    """A refusal or bad input, with a message that says what, where and how to fix."""


class NotFound(BridgeError):
    """A case, milestone, gate, partner, contact or template that does not exist."""


class IllegalTransition(BridgeError):
    """A change the lifecycle rules refuse; nothing was written."""


class StaleCase(BridgeError):
    """A change based on an older version of the case than the one stored."""


class InvalidInput(BridgeError):
    """Input that failed validation; `problems` lists each one with its location."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []
