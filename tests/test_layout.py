"""The library's modules form floors: each imports only from the floors below it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vidgen_nb"

# Bottom to top, as docs/layout.md lists them.
FLOORS = [
    ["config", "files"], ["commands"],
    ["data.images", "data.shapes"], ["data.scan"], ["data.loading"], ["data.record"], ["data"], ["data.__main__"],
    ["prior"], ["models"], ["deltas"], ["video"], ["checkpoint"], ["options"], ["generator"],
    ["losses", "metrics", "augment"], ["judge"], ["evaluation"], ["device", "stopping"], ["step"], ["parts"], ["precision"], ["run_state"], ["trainer"], ["shipped"],
    ["plots", "media"], ["generated_video"],
    ["widgets", "notebook"], ["train", "render"], ["report"], ["arms"], ["arm_runs"], ["study"], ["experiments"],
    ["cli_reference"], ["reference", "profiling"], ["bench"],
]
FLOOR = {module: level for level, modules in enumerate(FLOORS) for module in modules}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str) -> set[str]:
    """vidgen_nb modules that ``path`` imports, anywhere in it (the package root left out)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names = [f"{target}.{a.name}".strip(".") for a in node.names]
            found |= {n for n in names if n in FLOOR} or ({target} if target in FLOOR else set())
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found |= {n.removeprefix("vidgen_nb.") for n in names if n and n.startswith("vidgen_nb.")}
    return found


def test_every_module_has_a_floor():
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")} - {""}
    assert modules == set(FLOOR), "add new modules to FLOORS (and to the README's map)"


def test_imports_go_down_only():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if not name:
            continue  # the package's __init__ re-exports from every floor
        for target in imported_modules(path, name):
            if FLOOR[target] >= FLOOR[name]:
                upward.append(f"{name} imports {target}")
    assert not upward, upward


def test_modules_classes_and_functions_stay_readable_in_one_sitting():
    """No module over 400 lines, no class over 300, no function over 60; a function that
    only builds an argparse parser (its argument table) may be longer."""
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        name = module_name(path) or "vidgen_nb"
        if len(source.splitlines()) > 400:
            too_long.append(f"{name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            size = (node.end_lineno - node.lineno + 1) if hasattr(node, "end_lineno") else 0
            if isinstance(node, ast.ClassDef) and size > 300:
                too_long.append(f"{name}.{node.name}: a class of {size} lines")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and size > 60 \
                    and node.name != "build_parser":
                too_long.append(f"{name}.{node.name}: a function of {size} lines")
    assert not too_long, too_long
