"""The one exception type users see: a message that names the problem and the fix."""


class GeraError(Exception):
    """A user-facing error. ``str(err)`` is meant to be shown as-is (CLI, app)."""
