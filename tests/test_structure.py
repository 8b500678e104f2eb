"""Size limits for `ensemble/` and `app.py`: no function over 60 lines, no class over 200.

Sizes are `end_lineno - lineno + 1` of each (nested) def and class, decorators not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_LINES = 60
CLASS_LINES = 200


def _sources() -> list[Path]:
    return [*sorted((ROOT / "ensemble").rglob("*.py")), ROOT / "app.py"]


def _sizes(path: Path, root: Path = ROOT) -> dict[str, tuple[int, int]]:
    """{"path::Qualified.name": (lines, limit)} for every def and class in one file."""
    found: dict[str, tuple[int, int]] = {}
    relative = path.relative_to(root).as_posix()

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                limit = CLASS_LINES if isinstance(child, ast.ClassDef) else FUNCTION_LINES
                found[f"{relative}::{name}"] = (child.end_lineno - child.lineno + 1, limit)
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), "")
    return found


def _all_sizes() -> dict[str, tuple[int, int]]:
    return {key: size for path in _sources() for key, size in _sizes(path).items()}


def test_no_function_over_60_lines_and_no_class_over_200() -> None:
    over = {key: n for key, (n, limit) in _all_sizes().items() if n > limit}
    offenders = sorted((n, key) for key, n in over.items())
    assert not offenders, "over the size limit (split into named steps):\n" + "\n".join(
        f"  {key}: {n} lines" for n, key in reversed(offenders)
    )


def test_the_size_walk_counts_nested_definitions_without_decorators(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    body = "\n".join(f"        x{i} = {i}" for i in range(59))
    source.write_text(f"@decorator\nclass A:\n    def f(self):\n{body}\n        return 0\n")
    assert _sizes(source, tmp_path) == {"sample.py::A": (62, 200), "sample.py::A.f": (61, 60)}
