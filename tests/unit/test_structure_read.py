"""The read side's rooms hold (issue 12): ``projections/`` is the read model only and imports
nothing from the write side -- of ``streams/`` only the process settings, the errors, logging
and the two pieces of plumbing both sides share (the Kafka clients of ``streams.kafka``, which
the projector reads the event log with, and the RocksDB helper ``streams.rocksdb``) -- and
nothing of the HTTP process (``api/``). Neither package has an import cycle or a module over
600 lines. The imports are read with ``ast``, so a new one cannot slip in unseen."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT_LINES = 600

# What projections/ may take from streams/: the process settings, errors, logging and the
# shared plumbing. Nothing of the domain, the runtime, the client, redrive or the CLI.
STREAMS_ALLOWED = (
    "streams.settings",
    "streams.errors",
    "streams.logs",
    "streams.kafka",
    "streams.rocksdb",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, package: str) -> list[str]:
    """Every name ``path`` imports, as a dotted path (``from a.b import c`` gives ``a.b.c``,
    whether ``c`` is a module or a name in one; relative imports resolved against
    ``package``)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names += [f"{module}.{alias.name}" for alias in node.names]
    return names


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _forbidden_in_projections(module: str) -> bool:
    if _within(module, "api"):
        return True
    if _within(module, "streams"):
        return not any(_within(module, allowed) for allowed in STREAMS_ALLOWED)
    return False


def _modules(package: str) -> list[Path]:
    found = sorted((ROOT / package).rglob("*.py"))
    assert found, f"no modules under {ROOT / package}"
    return found


def test_projections_imports_nothing_of_the_write_side_or_the_http_process() -> None:
    found = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _modules("projections")
        for name in _imports(path, "projections")
        if _forbidden_in_projections(name)
    }
    assert not found, "projections/ imports the write side or api/:\n" + "\n".join(sorted(found))


def test_the_rule_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from streams.redrive import redrive\nfrom streams.settings import Settings\n"
        "from streams.kafka.profile import broker_profile\nimport streams.client\n"
        "from api.view import create_app\nfrom streams.domain.spec import canonical_json\n"
        "from schemas.credentials import mask_text\nfrom streams import rocksdb, redrive\n"
    )
    assert [n for n in _imports(module, "projections") if _forbidden_in_projections(n)] == [
        "streams.redrive.redrive",
        "streams.client",
        "api.view.create_app",
        "streams.domain.spec.canonical_json",
        "streams.redrive",
    ]


def _graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (a ``from pkg import mod`` counts as
    importing ``pkg.mod`` when that is a module)."""
    paths = {_module_name(p): p for package in packages for p in _modules(package)}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for imported in _imports(path, package):
            if imported in paths and imported != name:
                targets.add(imported)
            elif imported.rpartition(".")[0] in paths and imported.rpartition(".")[0] != name:
                targets.add(imported.rpartition(".")[0])
        graph[name] = targets
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a list of modules, the first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_in_projections_or_api() -> None:
    graph = _graph(("projections", "api"))
    # Package __init__ modules import nothing here; a module importing its own package's
    # __init__ is not a cycle worth naming.
    for name in graph:
        graph[name].discard("projections")
        graph[name].discard("api")
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_module_over_600_lines_in_projections_or_api() -> None:
    long = {
        f"{path.relative_to(ROOT)}: {lines} lines"
        for package in ("projections", "api")
        for path in _modules(package)
        if (lines := len(path.read_text("utf-8").splitlines())) > LIMIT_LINES
    }
    assert not long, f"modules over {LIMIT_LINES} lines:\n" + "\n".join(sorted(long))
