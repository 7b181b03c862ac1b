"""The domain is pure: ``streams/domain/`` imports only ``schemas``, itself and the standard
library (no settings, no I/O library, nothing of the adapters around it)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "streams" / "domain"


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside the package
                names.append("streams.domain")
            elif node.module is not None:
                names.append(node.module)
    return names


def _allowed(module: str) -> bool:
    top = module.split(".")[0]
    return (
        module == "schemas"
        or module.startswith("schemas.")
        or module == "streams.domain"
        or module.startswith("streams.domain.")
        or top in sys.stdlib_module_names
    )


def test_the_domain_imports_only_schemas_itself_and_the_standard_library() -> None:
    modules = sorted(DOMAIN.rglob("*.py"))
    assert modules, f"no modules under {DOMAIN}"
    found = {
        f"{path.relative_to(DOMAIN)}: {name}"
        for path in modules
        for name in _imports(path)
        if not _allowed(name)
    }
    assert not found, "streams/domain/ imports outside schemas and the standard library:\n" + (
        "\n".join(sorted(found))
    )


def test_the_rule_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from streams.settings import Settings\nimport pydantic\nimport heapq\n")
    assert [n for n in _imports(module) if not _allowed(n)] == ["streams.settings", "pydantic"]
