"""The one exception type for bad input, shared by every package (theory is the dependency root)."""

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input or a config outside a model's assumptions.

    The message is one line that names the problem; the CLI prints it and exits with code 2.
    """
