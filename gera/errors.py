"""The one exception type users see: a message that names the problem and the fix."""

import numpy as np


class GeraError(Exception):
    """A user-facing error. ``str(err)`` is meant to be shown as-is (CLI, app)."""


def require_finite(x: np.ndarray, what: str) -> None:
    """Refuse embeddings with NaN/inf before they poison a fit or a ranking."""
    bad = int((~np.isfinite(x)).any(axis=1).sum()) if len(x) else 0
    if bad:
        raise GeraError(f"{bad} {what} embedding(s) contain NaN or inf. Re-embed those items "
                        "(delete their embedding-cache folder) or drop them.")
