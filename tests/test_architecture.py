"""Rules of the code base that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_app_imports_streamlit():
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("db", "learner", "migrations", "bench")
        for path in (ROOT / package).rglob("*.py")
        if "streamlit" in _imports(path)
    ]
    assert offenders == []


def test_no_pages_folder_served_by_url():
    # Streamlit would serve app/pages/ by URL around the st.navigation login gate.
    assert not (ROOT / "app" / "pages").exists()


def test_cli_and_core_start_without_heavy_imports():
    code = (
        "import sys, app.cli, db.engine, db.importing, db.exporting, db.projects;"
        "import learner;"
        "heavy = [m for m in ('torch', 'transformers', 'streamlit', 'sklearn') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def _stray_strings(tree: ast.AST) -> list[int]:
    """Lines of bare string statements that are not a docstring (first in a module, class or
    function body)."""
    found = []
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if not isinstance(body, list):
                continue
            for i, stmt in enumerate(body):
                is_docstring = i == 0 and field == "body" and isinstance(
                    node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                if (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                        and isinstance(stmt.value.value, str) and not is_docstring):
                    found.append(stmt.lineno)
    return found


def test_pages_hold_no_bare_strings_that_streamlit_would_draw():
    # Streamlit's "magic" writes a bare string statement of a page onto the page: an attribute
    # docstring under a constant showed as a stray sentence on the Model page.
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in [ROOT / "app" / "main.py", *sorted((ROOT / "app" / "views").glob("*.py"))]
        for line in _stray_strings(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert offenders == []
    assert _stray_strings(ast.parse('X = 1\n"""drawn"""\n')) == [2]  # the rule can fail
