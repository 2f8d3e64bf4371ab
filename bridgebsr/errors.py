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


class DiskFull(BridgeError):
    """No room left where a command writes; what it wrote is whole, so running it again once
    there is space carries on."""

    def __init__(self, where: str, command: str = "the command") -> None:
        super().__init__(f"disk full at {where}; free space and run {command} again")


def means_disk_full(reason: str) -> bool:
    """Whether a database driver's error text says its disk (or quota) is full."""
    text = reason.lower()
    return any(s in text for s in ("database or disk is full", "no space left", "quota exceeded"))
