"""The one exception type a user can cause; stages print it as a single line and exit non-zero."""


class KDError(Exception):
    """A problem with the user's params, data or checkpoints, worded for the user."""
