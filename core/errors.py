"""Typed engine errors. Each carries a message a person can act on and the CLI exit code."""


class MalleableError(Exception):
    """Base class: a failure the user can do something about."""

    exit_code = 1
    kind = "error"


class InvalidInput(MalleableError):
    """Bad image, mask, point, parameter or path."""

    exit_code = 2
    kind = "invalid input"


class ModelUnavailable(MalleableError):
    """A model (or an auxiliary encoder a method needs) cannot be loaded."""

    exit_code = 3
    kind = "model unavailable"


class OutOfMemory(MalleableError):
    """The device ran out of memory."""

    exit_code = 4
    kind = "out of memory"


class Cancelled(MalleableError):
    """The user cancelled; nothing was changed."""

    exit_code = 130
    kind = "cancelled"


def out_of_memory_hint(device: str) -> OutOfMemory:
    return OutOfMemory(
        f"Out of memory on {device}: close other GPU programs, use a smaller image or mask, "
        "fewer steps, or run with --device cpu."
    )
