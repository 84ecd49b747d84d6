"""Giving freed heap memory back to the operating system, and keeping the garbage
collector off the state as it grows.

The engine's buckets (lists of ~90 floats, too large for Python's small-object allocator)
live in glibc's heap among the publish cycle's short-lived large objects (Redis command
buffers, fetched batches, interval documents). glibc returns freed memory only from the top
of its heap, so a long replay left hundreds of MiB free but resident (bench: heap 570 MiB,
429 MiB of it free). `malloc_trim(0)` releases every free page inside the heap as well.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

_libc = None
try:  # glibc only (Linux); elsewhere trimming is a no-op
    _path = ctypes.util.find_library("c")
    if _path:
        _lib = ctypes.CDLL(_path)
        if hasattr(_lib, "malloc_trim"):
            _lib.malloc_trim.argtypes = [ctypes.c_size_t]
            _lib.malloc_trim.restype = ctypes.c_int
            _libc = _lib
except OSError:  # pragma: no cover - no C library to load
    _libc = None


class _Mallinfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33+): every field a size_t."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


_mallinfo2 = getattr(_libc, "mallinfo2", None)
if _mallinfo2 is not None:
    _mallinfo2.argtypes = []
    _mallinfo2.restype = _Mallinfo2


def can_trim() -> bool:
    return _libc is not None


def trim_heap() -> float:
    """Release free heap pages to the OS; returns the seconds it took (0.0 when unsupported)."""
    if _libc is None:
        return 0.0
    t0 = time.perf_counter()
    _libc.malloc_trim(0)
    return time.perf_counter() - t0


def heap_usage() -> dict[str, int] | None:
    """The C heap's bytes: `in_use` by live allocations (objects over 512 bytes, buffers,
    C libraries), `free` held by the allocator but not in use; None without glibc 2.33+.

    The RSS cannot tell the two apart: a live part that keeps rising is memory something
    holds on to, a free part that does is the allocator's (`cc_worker_heap_bytes`). Python's
    small objects live in pymalloc's own arenas and are in neither.
    """
    if _mallinfo2 is None:
        return None
    info = _mallinfo2()
    return {"in_use": info.uordblks + info.hblkhd, "free": info.fordblks + info.fsmblks}


# pymalloc's own report (sys._debugmallocstats), written to a FILE* from open_memstream: the
# only place CPython tells its arenas; 1-2 ms for 1.1 GiB of small objects, under the GIL
_stats = getattr(ctypes.pythonapi, "_PyObject_DebugMallocStats", None)
_memstream = getattr(_libc, "open_memstream", None)
if _stats is not None and _memstream is not None:
    _stats.argtypes = [ctypes.c_void_p]
    _stats.restype = ctypes.c_int
    _memstream.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
    _memstream.restype = ctypes.c_void_p
    _libc.fclose.argtypes = [ctypes.c_void_p]
    _libc.free.argtypes = [ctypes.c_void_p]
_ARENAS = re.compile(rb"(\d+) arenas \* (\d+) bytes/arena")
_BLOCKS = re.compile(rb"# bytes in allocated blocks\s*=\s*([\d,]+)")


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """The process's resident set (Linux /proc/self/statm), what the OS and a container
    limit count; None elsewhere. Read beside `heap_usage` and `pymalloc_usage`, whose live
    and free parts say who holds it."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def pymalloc_usage() -> dict[str, int] | None:
    """Python's small-object allocator (objects of 512 bytes or less: most of the state):
    `in_use` bytes in live blocks, `free` the rest of its arenas; None when CPython does not
    report it (another allocator, PYTHONMALLOC=malloc).

    The complement of `heap_usage`: an arena goes back to the OS only once every block in it
    is free, so long-lived state mixed with a cycle's short-lived objects can keep arenas
    that are mostly empty. A rising `free` beside a level `in_use` is that, not a leak.
    """
    if _stats is None or _memstream is None:
        return None
    buf, size = ctypes.c_void_p(), ctypes.c_size_t()
    stream = _memstream(ctypes.byref(buf), ctypes.byref(size))
    if not stream:
        return None
    try:
        written = _stats(stream)
    finally:
        _libc.fclose(stream)  # flushes: buf and size are valid from here
    try:
        text = ctypes.string_at(buf, size.value) if buf.value else b""
    finally:
        _libc.free(buf)
    arenas, blocks = _ARENAS.search(text), _BLOCKS.search(text)
    if not written or arenas is None or blocks is None:
        return None
    total = int(arenas.group(1)) * int(arenas.group(2))
    in_use = int(blocks.group(1).replace(b",", b""))
    return {"in_use": in_use, "free": total - in_use}


@contextmanager
def growing_state() -> Iterator[None]:
    """Apply a batch of records without the collector's young generations scanning the
    state it adds.

    Nearly everything the engine allocates for a record stays (events, facts, buckets), and
    it makes next to no reference cycles (bench-engine: 397 objects collected in 300,000
    records). Left to the collector, each new object was scanned in generation 0, again in
    generation 1 and in every full collection before the next freeze: 12 % of the engine's
    time. So the young garbage of whatever ran before (a fetch, a cycle) is collected first,
    the collector is off while the batch is applied, and what the batch left is frozen, as
    after a publish cycle; the worker's periodic full collection (`Pipeline._collect_garbage`)
    unfreezes and sees all of it.
    """
    gc.collect(1)
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


__all__ = ["can_trim", "growing_state", "heap_usage", "pymalloc_usage", "resident_bytes",
           "trim_heap"]
