"""A byte budget of kept values: each value is made once and served from memory while it fits.

Training reads every item once an epoch, evaluation reads every video once a MoC grid: the same
keys, over and over, in the same order. A least-recently-used cache smaller than such a scan
misses on every read (each value is evicted just before it is wanted again); keeping the first
values that fit and making the rest each time hits on the kept part instead. So the budget is
filled once and nothing is evicted.
"""

from __future__ import annotations

from typing import Callable, Hashable


class Memo:
    """Values by key, made by ``make()`` on a key's first read and kept while the kept values'
    sizes sum to at most ``max_bytes``; a value that does not fit is made again on every read.

    ``size(value)`` is its size in bytes (``value.nbytes`` by default).
    """

    def __init__(self, max_bytes: int, size: Callable = None):
        self.max_bytes, self.nbytes, self._size, self._kept = int(max_bytes), 0, size or nbytes, {}

    def get(self, key: Hashable, make: Callable):
        value = self._kept.get(key)
        if value is None:
            value = make()
            n = self._size(value)
            if self.fits(n):
                self._kept[key] = value
                self.nbytes += n
        return value

    def fits(self, nbytes: int) -> bool:
        """Whether a value of ``nbytes`` would be kept."""
        return self.nbytes + nbytes <= self.max_bytes

    def __contains__(self, key) -> bool:
        return key in self._kept

    def __len__(self) -> int:
        return len(self._kept)

    def keys(self) -> list:
        """The kept keys, in the order they were first read."""
        return list(self._kept)


def nbytes(value) -> int:
    """The default size of a kept value: ``value.nbytes``."""
    return value.nbytes
