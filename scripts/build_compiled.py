"""Compile the modules on ccpulse's per-event path with Cython (`make install` runs this).

Faust's own per-event cost is fixed; what remains is ours: decoding, the KPI engine, the
checkpoint and the publish cycle, all plain Python (the asyncio modules stay so: see HOT).
Compiled as they are — Cython with `annotation_typing=False`, so Python semantics, no
rewrite — the engine spends 14 % less CPU per event and one worker does about a tenth more
events per second (docs/BENCHMARKS.md). The sources stay the product: the extension modules
sit beside them, `stream/_compiled.py` ignores any that no longer match their source, and
everything runs from source when the build is missing or CCPULSE_PURE_PYTHON=1.

    python scripts/build_compiled.py            # build beside the sources (skipped if current)
    python scripts/build_compiled.py --target DIR   # also copy into an installed package
    python scripts/build_compiled.py --clean    # remove the build
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_guard():
    """stream/_compiled.py by its path: importing the package would run its guard here
    (and this process may be a test run, which must keep using the compiled modules)."""
    spec = importlib.util.spec_from_file_location("ccpulse_build_guard",
                                                  ROOT / "stream" / "_compiled.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_guard = _load_guard()
MANIFEST, PACKAGE, digest, module_name = (_guard.MANIFEST, _guard.PACKAGE, _guard.digest,
                                          _guard.module_name)

# the per-event path and the publish cycle (bench profile); not the CLI, simulator or web.
# Not the asyncio modules (pipeline.py, sinks/redis_sink.py): compiled, the worker's memory
# grew (400,000-call replay: RSS +19 MiB/day with both, +9.7 with pipeline.py alone, against
# +1.6 from source; cause not found), docs/BENCHMARKS.md
HOT = [
    "stream/events.py",
    "stream/checkpoint.py",
    "stream/view.py",
    "stream/partitioning.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "stream" / "kpi").glob("*.py")
            if p.name != "__init__.py"),
]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
BUILD = ROOT / "build" / "cython"


def wanted() -> dict[str, str]:
    return {module_name(ROOT / src): digest(ROOT / src) for src in HOT}


def extension(src: str) -> Path:
    return (ROOT / src).with_name(Path(src).stem + SUFFIX)


def current() -> bool:
    try:
        manifest = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return False
    return manifest == wanted() and all(extension(src).exists() for src in HOT)


def clean() -> None:
    for src in HOT:
        extension(src).unlink(missing_ok=True)
    MANIFEST.unlink(missing_ok=True)
    shutil.rmtree(BUILD, ignore_errors=True)


def build(force: bool = False) -> None:
    from Cython.Build import cythonize
    from setuptools import setup

    os.chdir(ROOT)  # module paths (and names) are relative to the repository
    MANIFEST.unlink(missing_ok=True)  # written again once every module has built
    digests = wanted()  # of the sources as they are compiled
    modules = cythonize(
        HOT, build_dir=str(BUILD / "c"), nthreads=2, quiet=True, force=force,
        compiler_directives={"language_level": 3, "binding": True,
                             "annotation_typing": False})
    for ext in modules:  # warnings of Cython's generated code, not of ours
        ext.extra_compile_args += ["-Wno-unused-function", "-Wno-maybe-uninitialized",
                                   "-Wno-array-bounds"]
    setup(name="ccpulse-compiled", ext_modules=modules,
          script_args=["-q", "build_ext", "-j", "2", "--build-temp", str(BUILD / "temp"),
                       "--build-lib", str(BUILD / "lib"), *(["--force"] if force else [])])
    for src in HOT:
        place(BUILD / "lib" / extension(src).relative_to(ROOT), extension(src))
    MANIFEST.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")


def place(built: Path, dest: Path) -> None:
    """Copy to a new file and rename it over the old one: a running worker keeps the
    module it mapped (writing into that file in place could crash it)."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copy2(built, tmp)
    os.replace(tmp, dest)


def copy_into(target: Path) -> None:
    """Put the build into an installed copy of the package (`pip install .`, the image)."""
    for src in HOT:
        rel = extension(src).relative_to(PACKAGE)
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        place(extension(src), target / rel)
    shutil.copy2(MANIFEST, target / MANIFEST.name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=Path, help="an installed `stream` package to copy into")
    ap.add_argument("--clean", action="store_true")
    ap.add_argument("--force", action="store_true", help="rebuild even if current")
    args = ap.parse_args()
    if args.clean:
        clean()
        return 0
    if args.force or not current():
        t = time.monotonic()
        build(force=args.force)
        print(f"{len(HOT)} compiled modules up to date (Cython rebuilt the changed ones) in "
              f"{time.monotonic() - t:.0f} s")
    if args.target:
        copy_into(args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
