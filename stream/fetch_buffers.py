"""Fetched Kafka data that the consumer drops is freed at once, not at the next full GC.

aiokafka's `PartitionRecords` iterates its fetched buffer with a generator stored on itself
(`self._records_iterator = self._unpack_records()`): a reference cycle that only breaks when
the iteration runs to its end. A fetch the consumer drops before that (the partition was
paused, sought or revoked; `FetchResult.check_assignment`) leaves the cycle, with the whole
fetched buffer (1-6 MiB from tansu), to the cyclic garbage collector. The worker freezes its
heap after every publish cycle (`Pipeline._collect_garbage`), so such a cycle stayed until
the next full collection: a 400,000-call replay, which pauses partitions to keep them
aligned, grew its live C heap by ~4.5 MiB per day of history (jemalloc heap profile:
buffers read by aiokafka's protocol decoder). Dropping the generator when the records are
dropped lets reference counting free them.
"""

from __future__ import annotations

from aiokafka.consumer import fetcher as _fetcher

_PATCHED = "_ccpulse_frees_dropped_records"


def free_dropped_fetches() -> bool:
    """Install the fix once; False where this aiokafka has no such cycle to break."""
    result = getattr(_fetcher, "FetchResult", None)
    check = getattr(result, "check_assignment", None)
    if check is None:
        return False
    if getattr(check, _PATCHED, False):
        return True

    def check_assignment(self, tp):
        records = self._partition_records
        ok = check(self, tp)
        if not ok and records is not None and hasattr(records, "_records_iterator"):
            records._records_iterator = None  # the generator held the records: free both
        return ok

    setattr(check_assignment, _PATCHED, True)
    check_assignment.__doc__ = check.__doc__
    result.check_assignment = check_assignment
    return True


__all__ = ["free_dropped_fetches"]
