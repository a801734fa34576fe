"""The layers: api -> storage -> engine run without Dagster; the import contracts hold."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import segment_assets

ROOT = Path(__file__).resolve().parents[1]
LOWER_LAYERS = ("api", "engine", "storage")


def _modules(layer: str) -> list[str]:
    package = Path(segment_assets.__file__).parent / layer
    return [f"segment_assets.{layer}"] + [
        f"segment_assets.{layer}.{m.name}" for m in pkgutil.iter_modules([str(package)]) if m.name != "__main__"
    ]


def _loaded_after_importing(modules: list[str]) -> set[str]:
    """Top-level packages a fresh interpreter has loaded after importing `modules`."""
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "print('\\n'.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("layer", LOWER_LAYERS)
def test_lower_layers_load_without_dagster(layer: str) -> None:
    modules = _modules(layer)
    assert len(modules) > 1, f"no modules found under segment_assets/{layer}"
    loaded = _loaded_after_importing(modules)
    assert "segment_assets" in loaded  # the probe did import them
    assert not {name for name in loaded if name.startswith("dagster")}, f"segment_assets.{layer} loads Dagster"


def test_the_probe_sees_dagster_where_it_is_used() -> None:
    # The same probe on the Dagster layer must see Dagster, or the test above proves nothing.
    assert "dagster" in _loaded_after_importing(["segment_assets.orchestration.assets"])


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[lint]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
