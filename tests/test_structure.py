"""The package's shape: no import cycles (function-local imports included), and a reader that
needs neither dask, moderngl nor torch."""

import ast
import subprocess
import sys

from conftest import REPO

PACKAGE = REPO / "datagen"


def _module_name(path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its file (top level or in a function)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets.add(base)
                targets |= {f"{base}.{alias.name}" for alias in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 20 and "datagen.cli" in graph
    assert cycles(graph) == []


def test_the_sub_packages_depend_on_each_other_one_way():
    """Collapsed to sub-packages (synth, photo, data, run, models, spec, reconstruction; a top-level
    module stands for itself), the imports form no cycle either."""
    def package(module):
        parts = module.split(".")
        return ".".join(parts[:2])

    collapsed = {}
    for module, targets in import_graph().items():
        collapsed.setdefault(package(module), set()).update(package(t) for t in targets if package(t) != package(module))
    for module in list(collapsed):
        for target in collapsed[module]:
            collapsed.setdefault(target, set())
    assert cycles(collapsed) == []


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_reading_a_dataset_imports_neither_dask_nor_moderngl_nor_torch():
    code = ("import sys\nimport datagen.data.dataset\n"
            "print(sorted(m for m in ('dask', 'distributed', 'moderngl', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_import_in_the_readmes_python_examples_works():
    import re

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert blocks
    imports = [ast.unparse(node) for block in blocks for node in ast.walk(ast.parse(block))
               if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert any("ShardedDataset" in line for line in imports)
    result = subprocess.run([sys.executable, "-c", "\n".join(imports)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_no_module_of_the_package_is_much_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 420}
    assert long == {}
