"""The shape of the code (docs/architecture.md): which room may import which, no
import cycles, and modules and classes that fit in one sitting."""

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "streaming"

# What each room may import besides itself. `base` is the app's top-level modules
# everyone shares; `top` is what wires the rooms together (admin, URLs, the app
# config, management commands).
MAY_IMPORT = {
    "base": set(),
    "providers": {"base"},
    "accounting": {"base"},
    "relay": {"base", "providers", "accounting"},
    "api": {"base", "providers", "accounting", "relay"},
    "pages": {"base", "providers", "accounting", "relay"},
    "server": {"base", "providers", "accounting", "relay", "api", "pages"},
    "top": {"base", "providers", "accounting", "relay", "api", "pages", "server"},
}
BASE = {"models", "errors", "sse", "conversations", "caching", "pools", "shards"}
MAX_MODULE_LINES = 300
MAX_CLASS_LINES = 150
LONGER_ALLOWED = {"admin.py"}  # one ModelAdmin per model, side by side


def _modules() -> dict[str, Path]:
    """Dotted name -> path of every module of the app, migrations aside."""
    found = {}
    for path in APP.rglob("*.py"):
        relative = path.relative_to(APP.parent).with_suffix("")
        if "migrations" in relative.parts:
            continue
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "top"  # the package itself
    if parts[1] in MAY_IMPORT and (APP / parts[1]).is_dir():
        return parts[1]
    return "base" if parts[1] in BASE else "top"


def _imports(path: Path, *, module_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _internal(names: set[str], modules: dict[str, Path]) -> set[str]:
    return {name for name in names if name in modules and name != "streaming"}


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_room_imports_only_rooms_below_it(module):
    room = _room(module)
    allowed = MAY_IMPORT[room] | {room}
    used = _internal(_imports(MODULES[module]), MODULES)
    wrong = sorted(name for name in used if _room(name) not in allowed)
    assert not wrong, f"{module} ({room}) imports {wrong}"


def test_there_is_no_import_cycle():
    graph = {
        module: _internal(_imports(path, module_level_only=True), MODULES) - {module}
        for module, path in MODULES.items()
    }
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module) :] + [module]
            raise AssertionError(" -> ".join(cycle))
        if module in done:
            return
        for imported in graph.get(module, ()):
            # A package imports its own modules' names; that is not a cycle.
            if not imported.startswith(module + "."):
                visit(imported, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_and_classes_fit_in_one_sitting(module):
    path = MODULES[module]
    source = path.read_text()
    if path.name not in LONGER_ALLOWED:
        assert source.count("\n") <= MAX_MODULE_LINES, f"{module} is too long"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            lines = node.end_lineno - node.lineno + 1
            assert lines <= MAX_CLASS_LINES, f"{module}.{node.name}: {lines} lines"
