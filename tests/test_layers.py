"""The packages stack (README, "Layout"): agent.core < stores < policies < the rest of agent
< evals, with no import cycles, and function-local imports only where they keep a heavy library
out of a light command's start-up. Checked on the source (ast), so a break names its edge."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "stores", "policies", "evals")
# Libraries whose import costs seconds and hundreds of MB: what a function-local import may defer.
HEAVY = ("torch", "transformers", "peft", "chromadb", "langgraph", "langchain_core", "ray")
# What each layer may import (besides itself).
ALLOWED = {
    "core": {"core"},
    "stores": {"core", "stores"},
    "policies": {"core", "stores", "policies"},
    "agent": {"core", "stores", "policies", "agent"},
    "evals": {"core", "stores", "policies", "agent", "evals"},
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported project module, or a third-party top-level package
    line: int
    local: bool  # inside a function
    type_only: bool  # under `if TYPE_CHECKING:`
    commented: str  # the comment that goes with a local import ("" if none)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(p): p
        for package in PACKAGES
        for p in sorted((ROOT / package).rglob("*.py"))
        if "data" not in p.relative_to(ROOT).parts
    }


def layer(module: str) -> str:
    return "core" if module.startswith("agent.core") else module.split(".")[0]


def _comment_for(lines: list[str], lineno: int) -> str:
    """The comment on an import's line, or in the block of imports and comments just above it."""
    own = lines[lineno - 1]
    if "#" in own:
        return own.split("#", 1)[1]
    i = lineno - 2
    while i >= 0:
        text = lines[i].strip()
        if text.startswith("#"):
            return text
        if text and not text.startswith(("from ", "import ")):
            return ""
        i -= 1
    return ""


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{a.name}" for a in node.names]
            names = [n if n in modules else prefix for n in names]
        out = []
        for name in names:
            if name.split(".")[0] in PACKAGES:
                while name not in modules and "." in name:
                    name = name.rsplit(".", 1)[0]
                out.append(name)
            else:
                out.append(name.split(".")[0])
        return out

    def visit(node: ast.AST, local: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                comment = _comment_for(lines, child.lineno) if local else ""
                for target in targets(child):
                    found.append(Import(module, target, child.lineno, local, type_only, comment))
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit(child, local, True)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, True, type_only)
            else:
                visit(child, local, type_only)

    visit(tree, False, False)
    return found


def all_imports() -> tuple[dict[str, Path], list[Import]]:
    modules = project_modules()
    return modules, [imp for m, p in modules.items() for imp in imports_of(m, p, modules)]


def heavy_modules(modules: dict[str, Path], imports: list[Import]) -> set[str]:
    """Project modules whose import (module level, transitively) loads a heavy library."""
    eager: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if not imp.local and not imp.type_only:
            eager[imp.source].add(imp.target)
    heavy: set[str] = set()
    changed = True
    while changed:
        changed = False
        for m, targets in eager.items():
            if m not in heavy and any(t in HEAVY or t in heavy for t in targets):
                heavy.add(m)
                changed = True
    return heavy


def test_every_import_goes_down_the_layers():
    _, imports = all_imports()
    breaks = [
        f"{i.source} -> {i.target} (line {i.line}): {layer(i.source)} may not import "
        f"{layer(i.target)}"
        for i in imports
        if i.target.split(".")[0] in PACKAGES and layer(i.target) not in ALLOWED[layer(i.source)]
    ]
    assert not breaks, "\n".join(breaks)


def test_no_import_cycles():
    modules, imports = all_imports()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for i in imports:
        if i.target in modules and i.target != i.source and not i.type_only:
            graph[i.source].add(i.target)
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_local_project_imports_only_defer_heavy_modules_and_say_so():
    modules, imports = all_imports()
    heavy = heavy_modules(modules, imports)
    problems = []
    for i in imports:
        if not i.local or i.target not in modules:
            continue
        where = f"{modules[i.source].relative_to(ROOT)}:{i.line} imports {i.target}"
        if i.target not in heavy:
            problems.append(f"{where} inside a function, but it is light: import it at the top")
        elif i.source in heavy:
            problems.append(f"{where} inside a function, but {i.source} is heavy itself")
        elif not any(name in i.commented for name in HEAVY):
            problems.append(f"{where} inside a function with no comment naming what it defers")
    assert not problems, "\n".join(problems)


def test_the_cli_starts_without_heavy_libraries():
    code = (
        "import json, sys; import agent.cli; agent.cli.build_parser(); "
        f"print(json.dumps(sorted(set(m.split('.')[0] for m in sys.modules) & {set(HEAVY)!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []
