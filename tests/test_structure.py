"""The package's shape: no import cycles, every module importable alone, a CLI that starts
without torch, and no method decided by name outside the methods module."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                 for p in (ROOT / "gera").rglob("*.py"))


def _top_level_imports(module: str) -> set[str]:
    """The gera modules ``module`` imports when it is imported (not inside functions, not under
    TYPE_CHECKING)."""
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.Import, ast.ImportFrom, ast.Try)) else ():
            if isinstance(sub, ast.ImportFrom) and sub.module and sub.module.startswith("gera"):
                found.add(sub.module)
                found.update(f"{sub.module}.{a.name}" for a in sub.names
                             if f"{sub.module}.{a.name}" in MODULES)
            elif isinstance(sub, ast.Import):
                found.update(a.name for a in sub.names if a.name.startswith("gera"))
    return {m for m in found if m in MODULES and m != module}


def test_no_import_cycles():
    graph = {m: _top_level_imports(m) for m in MODULES}
    # a package imports its parent package first: count that edge too
    for m in MODULES:
        parent = m.rpartition(".")[0]
        if parent in graph and parent != "gera":
            graph[m].add(parent)
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", "import cycle: " + " → ".join(path + [m])
        state[m] = "open"
        for n in sorted(graph[m]):
            if not n.startswith(m + "."):  # a package importing its own submodules is fine
                visit(n, path + [m])
        state[m] = "done"

    for m in MODULES:
        visit(m, [])


def test_the_cli_starts_without_torch():
    code = "import sys, gera.cli; assert 'torch' not in sys.modules, 'gera.cli loaded torch'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    out = subprocess.run([sys.executable, "-m", "gera", "--help"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert "compare" in out and "ablate" in out


def test_no_method_is_named_outside_the_methods_module():
    library = [p for p in (ROOT / "gera").rglob("*.py") if p.name != "methods.py"]
    for path in library:
        for line in path.read_text().splitlines():
            if " / " in line:  # a folder called gera (~/.cache/gera), not the method
                continue
            for name in ('"gera"', '"contrastive"', "'gera'", "'contrastive'"):
                assert name not in line, f"{path.relative_to(ROOT)} decides by the name {name}"


def test_every_module_imports_alone():
    """Each module imported first, into a fresh ``gera`` (third-party packages stay loaded, so
    this is quick): an import-order dependency or a cycle would fail here."""
    code = """
import importlib, sys
failed = {}
for module in sys.argv[1:]:
    for name in [n for n in sys.modules if n == "gera" or n.startswith("gera.")]:
        del sys.modules[name]
    try:
        importlib.import_module(module)
    except Exception as err:
        failed[module] = repr(err)
print(failed)
assert not failed
"""
    modules = [m for m in MODULES if m != "gera.__main__"]  # that one runs the CLI
    halves = [subprocess.Popen([sys.executable, "-c", code, *modules[i::2]], cwd=ROOT)
              for i in range(2)]  # one per core
    assert [p.wait() for p in halves] == [0, 0]
