"""The house's arrows point down: l2l_tui → engine → models, models imports nothing of ours, inside engine/ each
subpackage imports only its own floor and those below, no import cycles, and importing the engine never loads textual.
Inside l2l_tui the app sits on top: screens and widgets post messages to it and never import it, even for type
checking. Checked on the source (AST, imports at any depth) and at import time."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("l2l_tui", "engine", "models")
MAY_IMPORT = {"l2l_tui": {"l2l_tui", "engine", "models"}, "engine": {"engine", "models"}, "models": {"models"}}
UI_ONLY = ("textual", "textual_plotext")
# engine/'s subpackages, lowest floor first: each may import its own and lower floors, never a higher one
ENGINE_FLOORS = ["config", "tasks", "store", "data", "filter", "augment", "run", "reports", "experiments", "export",
                 "tools"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, typing_too: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, function-level too (type-only with typing_too); relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found = []
    for node in ast.walk(tree) if typing_too else walk_runtime(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]  # 'from pkg import module'
    return found


def walk_runtime(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (imports for annotations only never run)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


SOURCES = {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def test_imports_point_down_only() -> None:
    offenders = []
    for name, path in SOURCES.items():
        layer = name.split(".")[0]
        for line, module in imports(path):
            top = module.split(".")[0]
            if (top in PACKAGES and top not in MAY_IMPORT[layer]) or (top in UI_ONLY and layer != "l2l_tui"):
                offenders.append(f"{path.relative_to(REPO)}:{line}: import {module}")
    assert offenders == [], "\n".join(offenders)


def engine_floor(module: str) -> int | None:
    """The floor of an engine module (its subpackage's place in ENGINE_FLOORS), None outside a subpackage."""
    parts = module.split(".")
    if parts[0] != "engine" or len(parts) < 2:
        return None
    return ENGINE_FLOORS.index(parts[1]) if parts[1] in ENGINE_FLOORS else None


def test_engine_is_subpackages_on_floors() -> None:
    loose = sorted(name for name in SOURCES if name.count(".") == 1 and name.startswith("engine.")
                   and name.split(".")[1] not in ENGINE_FLOORS)
    assert loose == [], f"engine modules outside a subpackage: {loose}"
    offenders = []
    for name, path in SOURCES.items():
        here = engine_floor(name)
        if here is None:
            continue
        for line, module in imports(path):
            there = engine_floor(module)
            if there is not None and there > here:
                offenders.append(f"{path.relative_to(REPO)}:{line}: {ENGINE_FLOORS[here]} imports {module} (a higher floor)")
    assert offenders == [], "\n".join(offenders)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {name: set() for name in SOURCES}
    for name, path in SOURCES.items():
        for _, module in imports(path):
            if module in SOURCES and module != name:
                graph[name].add(module)
    cycles = strongly_connected(graph)
    assert cycles == [], "import cycles: " + "; ".join(" → ".join(sorted(c)) for c in cycles)


TUI = {name: path for name, path in SOURCES.items() if name.split(".")[0] == "l2l_tui"}
ENTRY_POINTS = {"l2l_tui.cli", "l2l_tui.__main__"}  # the only modules that may import the app


def test_the_tui_has_no_import_cycles_not_even_for_type_checking() -> None:
    # A type-only import still ties the modules together: a screen typed against the app imports everything the app does.
    graph: dict[str, set[str]] = {name: set() for name in TUI}
    for name, path in TUI.items():
        for _, module in imports(path, typing_too=True):
            if module in TUI and module != name:
                graph[name].add(module)
    cycles = strongly_connected(graph)
    assert cycles == [], "import cycles in l2l_tui: " + "; ".join(" → ".join(sorted(c)) for c in cycles)


def test_only_the_entry_points_import_the_app() -> None:
    offenders = [f"{path.relative_to(REPO)}:{line}: import {module}"
                 for name, path in TUI.items() if name not in ENTRY_POINTS and name != "l2l_tui.app"
                 for line, module in imports(path, typing_too=True) if module == "l2l_tui.app" or module.startswith("l2l_tui.app.")]
    assert offenders == [], "\n".join(offenders)


def app_methods() -> set[str]:
    """The methods L2LApp defines beyond Textual's App (Textual's own API stays open to screens)."""
    from textual.app import App

    tree = ast.parse(TUI["l2l_tui.app"].read_text(encoding="utf-8"))
    app = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "L2LApp")
    defined = {node.name for node in app.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    return defined - set(dir(App))


def app_calls(tree: ast.AST, methods: set[str]) -> list[tuple[int, str]]:
    """(line, name) of each `….app.NAME`, `….l2l.NAME` or `app.NAME` whose NAME is one of `methods`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in methods:
            owner = node.value
            if (isinstance(owner, ast.Attribute) and owner.attr in ("app", "l2l")) or (isinstance(owner, ast.Name) and owner.id == "app"):
                found.append((node.lineno, node.attr))
    return sorted(found)


def test_screens_and_widgets_post_messages_instead_of_calling_the_app() -> None:
    methods = app_methods()
    assert {"open_run", "start_run", "export_dialog"} <= methods
    offenders = [f"{path.relative_to(REPO)}:{line}: app.{attr}"
                 for name, path in TUI.items() if name.startswith(("l2l_tui.screens.", "l2l_tui.widgets."))
                 for line, attr in app_calls(ast.parse(path.read_text(encoding="utf-8")), methods)]
    assert offenders == [], "post an l2l_tui.messages message instead:\n" + "\n".join(offenders)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_cycle_and_a_backward_import() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": set()}) == [{"a", "b"}]
    assert ("models", "engine") not in {(k, m) for k, v in MAY_IMPORT.items() for m in v}
    assert engine_floor("engine.run.loop") == ENGINE_FLOORS.index("run") and engine_floor("engine") is None
    calls = ast.parse("self.app.open_run(1)\nself.l2l.start_run(2)\nself.app.push_screen(s)\nself.l2l.store_path\n")
    assert app_calls(calls, {"open_run", "start_run"}) == [(1, "open_run"), (2, "start_run")]


def test_importing_engine_and_models_does_not_load_the_app() -> None:
    modules = sorted(name for name in SOURCES if name.split(".")[0] in ("engine", "models"))
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
