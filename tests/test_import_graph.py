"""The packages' import graph has no cycle: each module imports only modules below it.

Every `import` statement counts, at module level or inside a function (a lazy import that
closes a circle is still a circle). A submodule's implicit import of its own package is not an
edge. The walk reads the source with `ast`; nothing is imported.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("kp3d", "kp3d_kernels")


def _modules():
    """{dotted module name: path} of every .py file of the packages in the source tree."""
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _resolve(current, is_package, level, name):
    """The absolute dotted name of a (possibly relative) import inside module `current`."""
    if level == 0:
        return name
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_graph():
    """{module: set of modules of the packages it imports}."""
    modules = _modules()
    graph = {}
    for mod, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(mod, is_package, node.level, node.module or "")
                targets = [target]
                # `from pkg import name`: name may be a submodule
                targets += [f"{target}.{alias.name}" for alias in node.names
                            if f"{target}.{alias.name}" in modules]
            for t in targets:
                while t and t not in modules:  # `import a.b.c` of a name inside a module
                    t = t.rpartition(".")[0]
                if t and t != mod and not mod.startswith(t + "."):
                    edges.add(t)
        graph[mod] = edges
    return graph


def find_cycle(graph):
    """One cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_relative_imports_resolve():
    assert _resolve("kp3d.train.trainer", False, 2, "checkpoint") == "kp3d.checkpoint"
    assert _resolve("kp3d.data", True, 1, "base") == "kp3d.data.base"
    assert _resolve("kp3d.data.synthetic.dataset", False, 1, "") == "kp3d.data.synthetic"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    graph = {m: e for m, e in import_graph().items() if m.split(".")[0] == package}
    assert graph, package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
