"""The compiled build of the hot modules (`scripts/build_compiled.py`): present, current,
ignored when out of date, and the same numbers as the sources."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stream._compiled import pure_requested

ROOT = Path(__file__).resolve().parent.parent
PURE = pure_requested()
STALE = "compiled modules missing or stale: run `make compiled` (scripts/build_compiled.py)"


def build_script():
    spec = importlib.util.spec_from_file_location("build_compiled",
                                                  ROOT / "scripts" / "build_compiled.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def python(code: str, cwd: Path, pure: bool = False) -> str:
    env = {k: v for k, v in os.environ.items() if k != "CCPULSE_PURE_PYTHON"}
    env["PYTHONPATH"] = str(cwd)
    if pure:
        env["CCPULSE_PURE_PYTHON"] = "1"
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def loaded_from(names: list[str], cwd: Path, pure: bool = False) -> dict[str, str]:
    code = ("import importlib, json; print(json.dumps({n: importlib.import_module(n).__file__"
            f" for n in {names!r}}}))")
    return json.loads(python(code, cwd, pure))


@pytest.mark.skipif(PURE, reason="CCPULSE_PURE_PYTHON=1 runs everything from source")
def test_the_hot_modules_run_compiled_and_current():
    """`make install` builds them; a missing or stale build would cost a tenth of the
    worker's events/s without a word, so it fails here instead."""
    build = build_script()
    assert build.current(), STALE
    names = sorted(build.wanted())
    files = loaded_from(names, ROOT)
    assert all(not f.endswith(".py") for f in files.values()), files


def test_loading_the_build_script_changes_nothing_in_the_caller():
    """The bench and these tests load it: it once set CCPULSE_PURE_PYTHON in the caller, and
    every worker started afterwards ran from source without a word."""
    env, finders = dict(os.environ), list(sys.meta_path)
    build_script()
    assert dict(os.environ) == env
    assert sys.meta_path == finders


def test_an_edited_module_runs_from_its_source(tmp_path):
    """A compiled module whose source changed after the build is not used, the others are;
    CCPULSE_PURE_PYTHON=1 ignores them all."""
    build = build_script()
    if not build.current():
        pytest.fail(STALE)
    shutil.copytree(ROOT / "stream", tmp_path / "stream")
    edited = tmp_path / "stream" / "kpi" / "windows.py"
    edited.write_text(edited.read_text() + "\nEDITED = True\n")
    files = loaded_from(["stream.kpi.windows", "stream.kpi.store"], tmp_path)
    assert files["stream.kpi.windows"] == str(edited)
    assert not files["stream.kpi.store"].endswith(".py")
    assert python("import stream.kpi.windows as w; print(w.EDITED)", tmp_path) == "True\n"
    pure = loaded_from(["stream.kpi.windows", "stream.kpi.store"], tmp_path, pure=True)
    assert all(f.endswith(".py") for f in pure.values()), pure
    # no manifest at all: every extension module found is ignored
    (tmp_path / "stream" / "_compiled.json").unlink()
    bare = loaded_from(["stream.kpi.store", "stream.view"], tmp_path)
    assert all(f.endswith(".py") for f in bare.values()), bare


def test_compiled_and_source_give_the_same_state():
    """The same stream (late, duplicated and bad records among 12,000) through the compiled
    and the pure-Python engine: every bucket, fact, dead letter and observation equal, floats
    compared by repr."""
    code = "import runpy, sys; sys.argv = ['x', '12000', '7']; " \
           "runpy.run_path('tests/engine_state.py', run_name='__main__')"
    compiled = json.loads(python(code, ROOT))
    source = json.loads(python(code, ROOT, pure=True))
    assert source.pop("compiled") == []
    if not PURE:
        assert "stream.kpi.interaction" in compiled["compiled"]
    compiled.pop("compiled")
    assert compiled["dead"] and compiled["observed"] and compiled["duplicates"] > 0
    stores = compiled["stores"]
    assert sum(len(s["minutes"]) for s in stores.values()) > 500
    assert sum(len(s["intervals"]) for s in stores.values()) > 200
    assert compiled == source
