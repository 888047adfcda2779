"""The shape of the house (docs/architecture.md): no import circle, the engine never reaches into a plug-in, plug-ins
import only the contract, the command line starts without torch, and files stay readable."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "tasks", "backbones", "samplers")
# What a plug-in may import from the harness (scoring: the answer extractors and summaries tasks score with;
# store.selections: the selection-file format replay reads), and what the engine may import from the plug-ins.
CONTRACT = ("harness.records", "harness.registry", "harness.errors", "harness.config", "harness.shipped",
            "harness.util", "harness.scoring", "harness.store.selections")
PLUGIN_BASES = ("tasks.base", "backbones.base", "backbones.prefix", "backbones.placement", "samplers.base")
# Tools that build the shipped weights of particular plug-ins: they may import them (nothing imports the tools back).
TOOLS = ("harness.miniworld", "harness.train")
MAX_LINES = 400
LONG_FILES = {  # path -> why it stays one file
    "harness/train/tspo.py": "the Trainer: one training loop (rollouts, rewards, update, checkpoints), read top down",
}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules `name` imports, at module level or inside functions. `from a.b import c` is an arrow to
    the module a.b.c where c is one, else to a.b; importing a.b.c itself is an arrow to a.b.c only."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                out.add(target if target in MODULES else base)
    return {m for m in out if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _kind(module: str) -> str:
    return module.split(".")[0]


def test_no_import_circle():
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert circles == []


def test_the_engine_never_imports_a_plugin_module():
    wrong = [f"{m} -> {t}" for m, targets in GRAPH.items() if _kind(m) == "harness" and not _within(m, TOOLS)
             for t in targets if _kind(t) != "harness" and not _within(t, PLUGIN_BASES)]
    assert wrong == []


def test_plugins_import_only_the_contract():
    wrong = []
    for m, targets in GRAPH.items():
        if _kind(m) == "harness":
            continue
        for t in targets:
            if _kind(t) == "harness" and not _within(t, CONTRACT):
                wrong.append(f"{m} -> {t}")
            elif _kind(t) not in ("harness", _kind(m)) and not _within(t, PLUGIN_BASES):
                wrong.append(f"{m} -> {t}")  # a backbone importing a task, ...
    assert wrong == []


def test_nothing_imports_the_tools_back():
    wrong = [f"{m} -> {t}" for m, targets in GRAPH.items() if not _within(m, TOOLS)
             for t in targets if _within(t, TOOLS) and not (m == "harness.cli" or m.startswith("harness.cli."))]
    assert wrong == []


def _fresh_python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("argv", [["--help"], ["list", "samplers"], ["list", "tasks", "--json"]])
def test_the_command_line_starts_without_heavy_imports(argv):
    """`harness --help` and `harness list` read registries only: no torch, transformers, pandas or matplotlib."""
    out = _fresh_python(
        "import contextlib, io, sys\n"
        "from harness.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'pandas', 'matplotlib') if m in sys.modules))\n")
    assert out.strip().splitlines()[-1] == "[]"


def test_source_files_stay_readable():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert {p: n for p, n in long.items() if p not in LONG_FILES} == {}
