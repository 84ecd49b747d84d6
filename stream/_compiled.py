"""Which modules run compiled, and a guard against compiled code that is out of date.

`scripts/build_compiled.py` (run by `make install`) compiles the modules on the per-event
path with Cython, beside their sources, and records each source's digest in
`_compiled.json`. Python prefers an extension module to the .py of the same name, so a
compiled module whose source was edited since the build would silently run the old code.
This module runs first (`stream/__init__.py`): every extension module found in the package
is checked against the manifest, and one that is not in it or no longer matches its source
is loaded from its .py instead. With CCPULSE_PURE_PYTHON=1 every module is.

The compiled modules are the same code: Cython is told to ignore the annotations
(`annotation_typing=False`), so the semantics are Python's, and `tests/test_compiled.py`
checks that both give the same state.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
MANIFEST = PACKAGE / "_compiled.json"
PURE_ENV = "CCPULSE_PURE_PYTHON"


def pure_requested() -> bool:
    """CCPULSE_PURE_PYTHON set (and not 0): every module from source."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def module_name(path: Path) -> str:
    """`stream.kpi.store` for …/stream/kpi/store.cpython-311-x86_64-linux-gnu.so or store.py."""
    rel = path.relative_to(PACKAGE.parent)
    return ".".join((*rel.parts[:-1], rel.name.split(".", 1)[0]))


def extension_modules() -> dict[str, Path]:
    """Module name -> its .py, for every extension module built for this interpreter."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    found = {}
    for so in PACKAGE.rglob(f"*{suffix}"):
        source = so.with_name(so.name[: -len(suffix)] + ".py")
        if source.exists():
            found[module_name(source)] = source
    return found


def stale_modules() -> dict[str, Path]:
    """The extension modules that must not be used: all with CCPULSE_PURE_PYTHON=1, else
    those missing from the manifest or built from another version of their source."""
    built = extension_modules()
    if pure_requested():
        return built
    try:
        manifest = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        manifest = {}
    return {name: source for name, source in built.items()
            if manifest.get(name) != digest(source)}


class SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the named modules as their .py files, ahead of the extension modules."""

    def __init__(self, sources: dict[str, Path]) -> None:
        self.sources = sources

    def find_spec(self, fullname, path=None, target=None):  # noqa: ARG002 - finder protocol
        source = self.sources.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def install_guard() -> dict[str, Path]:
    """Route the stale extension modules to their sources; returns them."""
    stale = stale_modules()
    if stale:
        sys.meta_path.insert(0, SourceFirst(stale))
        if not pure_requested():
            logging.getLogger(__name__).warning(
                "compiled modules that do not match their sources, run from source: %s "
                "(`make install` rebuilds them)", ", ".join(sorted(stale)))
    return stale


def compiled_modules() -> list[str]:
    """The package's modules imported so far that run compiled."""
    return sorted(name for name, mod in list(sys.modules.items())
                  if name.startswith(PACKAGE.name + ".")
                  and str(getattr(mod, "__file__", "") or "").endswith(
                      tuple(importlib.machinery.EXTENSION_SUFFIXES)))
