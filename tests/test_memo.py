"""The memo that lets the methods and the evaluation of one comparison share work."""
import numpy as np

from gera.memo import fingerprint, memoize_arrays


def test_results_are_reused_only_for_identical_content():
    calls = []

    @memoize_arrays(maxsize=2)
    def total(x, scale=1.0):
        calls.append(1)
        return float(x.sum() * scale)

    x = np.arange(6, dtype=np.float32)
    assert total(x) == total(x.copy()) == 15.0 and len(calls) == 1
    assert total(x, scale=2.0) == 30.0 and len(calls) == 2
    y = x.copy()
    y[0] = 1.0
    assert total(y) == 16.0 and len(calls) == 3
    total(x.reshape(2, 3))  # same bytes, another shape: another key
    assert len(calls) == 4
    total(x)  # evicted by the last two (maxsize 2): computed again
    assert len(calls) == 5


def test_fingerprint_tells_dtypes_apart():
    x = np.zeros(4, np.float32)
    assert fingerprint(x) != fingerprint(x.view(np.int32))
    assert fingerprint(x) == fingerprint(np.zeros(4, np.float32))
    assert fingerprint(np.zeros((0, 3))) != fingerprint(np.zeros((0, 4)))  # empty pools too
