"""The house's shape: no import circles between modules, and the layers import only downwards.

The graph is read from the source with `ast`: every `import` and `from ... import` anywhere in a
module, imports inside functions included (a lazy import that only dodges a circle still makes
one). Importing `a.b.c` also runs `a/__init__` and `a/b/__init__`, so those count as edges too,
except the importer's own packages (already being imported when it runs).
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "variants", "envs")


def module_files(root: Path = ROOT, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of `packages` (a package's `__init__` too)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _known(name: str, modules) -> str | None:
    """The longest prefix of `name` that is one of ours (`pkg.mod.attr` -> `pkg.mod`)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def _imported_names(tree: ast.AST, importer: str, is_package: bool, modules) -> set[str]:
    """Our modules that the statements in `tree` name, relative imports resolved."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = importer.split(".") if is_package else importer.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # `from pkg import module` names a module; `from mod import name` its module
                names.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module)
    return {known for name in names if (known := _known(name, modules))}


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules its source imports (with the packages each import runs), ours only."""
    modules = module_files(root, packages)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        own = {".".join(name.split(".")[:end]) for end in range(1, name.count(".") + 2)}
        targets = set()
        for target in _imported_names(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py", modules):
            parts = target.split(".")
            targets.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
        graph[name] = {t for t in targets if t in modules and t not in own}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle `[a, b, ..., a]` if the graph has any (depth-first search), else None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest dependency path of an acyclic graph (importer first)."""
    memo: dict[str, list[str]] = {}

    def chain(node: str) -> list[str]:
        if node not in memo:
            memo[node] = [node] + max((chain(t) for t in sorted(graph[node])), key=len, default=[])
        return memo[node]

    return max((chain(node) for node in sorted(graph)), key=len)


# ---------------------------------------------------------------------------- the graph reader itself
def test_reader_resolves_every_import_form(tmp_path):
    """Relative, `from pkg import module`, `import a.b`, lazy imports and package `__init__`s, on a toy tree."""
    files = {
        "p/__init__.py": "from p import a\n",
        "p/a.py": "from .b import thing\n",
        "p/b.py": "def f():\n    from . import c\n",
        "p/c.py": "import p.sub.d\n",
        "p/sub/__init__.py": "",
        "p/sub/d.py": "from ..a import x\nfrom . import e\n",
        "p/sub/e.py": "import os\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, ("p",))
    assert graph == {"p": {"p.a"}, "p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.sub", "p.sub.d"},
                     "p.sub": set(), "p.sub.d": {"p.a", "p.sub.e"}, "p.sub.e": set()}
    assert find_cycle(graph) == ["p.a", "p.b", "p.c", "p.sub.d", "p.a"]
    del graph["p.sub.d"]
    graph["p.c"] = {"p.sub"}
    assert find_cycle(graph) is None
    assert longest_chain(graph) == ["p", "p.a", "p.b", "p.c", "p.sub"]


def test_reader_sees_the_real_imports():
    """A reader that found nothing would pass the tests below: check edges known to exist."""
    graph = import_graph()
    assert "orchestrator.registry" in graph["orchestrator.config"]
    assert "variants.base" in graph["orchestrator.budget"]
    assert "orchestrator.rl.loop" in graph["orchestrator.train"]  # a lazy import (RLlib only where RL runs)


# ---------------------------------------------------------------------------- the house
def test_no_import_cycles():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_lower_layers_never_name_higher_ones():
    """variants/ stays plain PyTorch and envs/ plain data, even in lazy imports."""
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("variants"):
            assert not {t for t in targets if t.startswith(("orchestrator", "envs"))}, name
        if name.startswith("envs"):
            assert not {t for t in targets if t.startswith(("orchestrator", "variants"))}, name


LOADED = """
import importlib, json, sys
for name in sys.argv[2:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[1].split(','))))
"""


def loaded_after_importing(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    """The `forbidden` top-level packages a fresh interpreter holds after importing `modules`."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", LOADED, ",".join(forbidden), *modules], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("package", "forbidden"), [("variants", ("orchestrator", "ray")),
                                                     ("envs", ("variants", "orchestrator", "ray"))])
def test_importing_a_layer_loads_nothing_above_it(package, forbidden):
    modules = sorted(name for name in module_files() if name.split(".")[0] == package)
    assert len(modules) > 2
    assert loaded_after_importing(modules, forbidden) == []


def test_boundary_check_sees_a_loaded_module():
    """The subprocess check above reports what it should (here: orchestrator loads envs)."""
    assert "envs" in loaded_after_importing(["orchestrator"], ("envs",))
