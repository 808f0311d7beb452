"""The engine and the models never import textual: checked in the source (AST) and at import time (subprocess)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADLESS = ("engine", "models")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement in a file, at any depth (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_no_textual_import_in_engine_or_models_source() -> None:
    files = [p for package in HEADLESS for p in sorted((REPO / package).rglob("*.py"))]
    assert files, "no engine/models sources found"
    offenders = [f"{path.relative_to(REPO)}:{line}: import {module}" for path in files for line, module in _imports(path)
                 if module.split(".")[0] in ("textual", "textual_plotext", "l2l_tui")]
    # the CLI's no-argument entry opens the app lazily; that one import is the only bridge allowed
    allowed = {"engine/cli.py"}
    offenders = [o for o in offenders if not (o.split(":")[0] in allowed and "l2l_tui.app" in o)]
    assert offenders == [], "\n".join(offenders)


def test_importing_engine_and_models_does_not_load_textual() -> None:
    modules = ["engine.loop", "engine.cli", "engine.worker", "engine.runs", "engine.report", "engine.export"]
    modules += sorted(f"models.{p.stem}" for p in (REPO / "models").glob("*.py") if p.stem != "__init__")
    modules += sorted(f"models.{p.parent.name}" for p in (REPO / "models").glob("*/__init__.py"))
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_plotext', 'l2l_tui'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing the engine loaded {loaded}"
