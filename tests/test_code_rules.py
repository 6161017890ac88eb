"""The review's rules for jaxdl/: no function over 80 lines, no function or constructor
with more than 8 positional parameters (of a dataclass's generated constructor, the
fields a call must give: those without a default, unless keyword-only); and no import
runs upward (the trainer imports no sweep, the pure core no trainer, viz no trainer)."""

import ast
from pathlib import Path

from tests.conftest import ROOT

MAX_LINES = 80
MAX_POSITIONAL = 8


def positional(function: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> int:
    names = [a.arg for a in (*function.args.posonlyargs, *function.args.args)]
    return len(names) - (1 if method and names and names[0] in ("self", "cls") else 0)


def dataclass_fields(cls: ast.ClassDef) -> int | None:
    """How many fields without a default a dataclass's generated constructor takes by
    position (None: not a dataclass, or keyword-only)."""
    for decorator in cls.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        name = ast.unparse(call.func if call else decorator)
        if name.split(".")[-1] != "dataclass":
            continue
        if call and any(
            k.arg == "kw_only" and ast.unparse(k.value) == "True" for k in call.keywords
        ):
            return None
        return sum(
            isinstance(node, ast.AnnAssign)
            and node.value is None
            and "ClassVar" not in ast.unparse(node.annotation)
            and "KW_ONLY" not in ast.unparse(node.annotation)
            for node in cls.body
        )
    return None


def violations(source: str, where: str) -> list[str]:
    found = []
    tree = ast.parse(source)
    methods = {
        id(node)
        for cls in ast.walk(tree)
        if isinstance(cls, ast.ClassDef)
        for node in cls.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            count = positional(node, id(node) in methods)
            if lines > MAX_LINES:
                found.append(f"{where}:{node.lineno} {node.name}: {lines} lines")
            if count > MAX_POSITIONAL:
                found.append(f"{where}:{node.lineno} {node.name}: {count} positional parameters")
        elif isinstance(node, ast.ClassDef):
            count = dataclass_fields(node)
            if count is not None and count > MAX_POSITIONAL:
                found.append(f"{where}:{node.lineno} {node.name}: {count} positional fields")
    return found


def test_the_rule_finds_what_it_forbids():
    body = "\n".join(f"    x{k} = {k}" for k in range(MAX_LINES))
    source = (
        f"def long():\n{body}\n"
        "def many(a, b, c, d, e, f, g, h, i, *, j): pass\n"
        "class C:\n    def method(self, a, b, c, d, e, f, g, h): pass\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class D:\n" + "".join(f"    f{k}: int\n" for k in range(MAX_POSITIONAL + 1)) + ""
        "    g: int = 0\n"
        "@dataclasses.dataclass(kw_only=True)\n"
        "class E:\n" + "".join(f"    f{k}: int\n" for k in range(MAX_POSITIONAL + 1))
    )
    assert [v.split(" ", 1)[1] for v in violations(source, "x")] == [
        f"long: {MAX_LINES + 1} lines",
        "many: 9 positional parameters",
        "D: 9 positional fields",
    ]


def test_no_long_function_and_no_long_parameter_list_in_jaxdl():
    found = []
    for path in sorted((ROOT / "jaxdl").rglob("*.py")):
        found += violations(path.read_text(), str(Path(path).relative_to(ROOT)))
    assert not found, "\n".join(found)


# package -> the packages of jaxdl it must not import (they sit above it)
ABOVE = {
    "train": {"sweeps", "evaluation", "serve", "export", "testing"},
    "viz": {"train", "sweeps", "evaluation"},
    **{
        core: {"train", "sweeps", "evaluation", "serve", "export", "testing"}
        for core in ("configs", "registry", "optim", "losses", "backends", "models", "tasks")
    },
}


def imported_packages(source: str) -> set[str]:
    """The jaxdl packages a module imports (at its top or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
            if node.module == "jaxdl":
                names = [f"jaxdl.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name.split(".")[1] for name in names if name.startswith("jaxdl.")}
    return found


def test_no_import_runs_upward():
    assert imported_packages("from jaxdl import sweeps\nimport jaxdl.train.run") == {
        "sweeps",
        "train",
    }
    upward = []
    for path in sorted((ROOT / "jaxdl").rglob("*.py")):
        package = path.relative_to(ROOT / "jaxdl").with_suffix("").parts[0]
        wrong = imported_packages(path.read_text()) & ABOVE.get(package, set())
        upward += [f"{path.relative_to(ROOT)} imports jaxdl.{name}" for name in sorted(wrong)]
    assert not upward, "\n".join(upward)
