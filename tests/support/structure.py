"""Reading the repository's structure with ``ast``: modules, the imports they run when loaded,
the import graph and its cycles, and reaches into aiokafka's private members.

Used by ``tests/unit/test_structure.py``; nothing here imports the modules it reads.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Our packages: the installed ones, the HTTP process, the bench (outside the wheel).
PACKAGES = ("schemas", "streams", "projections", "api", "bench")


def parse(path: Path) -> ast.Module:
    """The module's syntax tree (each text is parsed once per test run)."""
    return _parse(path.read_text("utf-8"), str(path))


@cache
def _parse(text: str, filename: str) -> ast.Module:
    return ast.parse(text, filename)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(packages: Iterable[str], root: Path = ROOT) -> dict[str, Path]:
    """Module name -> path of every ``.py`` file under the packages that exist."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _load_time_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements that run when the module is imported: the module's body, into ``if``,
    ``try`` and ``with`` blocks, not into functions, classes or ``if TYPE_CHECKING:``."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _load_time_statements(node.body)
            yield from _load_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _load_time_statements(block)
            for handler in node.handlers:
                yield from _load_time_statements(handler.body)
        elif isinstance(node, ast.With):
            yield from _load_time_statements(node.body)


def load_time_imports(
    path: Path, name: str, *, everywhere: bool = False
) -> list[tuple[str, list[str]]]:
    """``(module, [names])`` for every import that runs when module ``name`` (at ``path``) is
    loaded (``everywhere``: also those inside functions and ``if TYPE_CHECKING:``); relative
    imports resolved; ``import a.b`` gives ``("a.b", [])``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = parse(path)
    found: list[tuple[str, list[str]]] = []
    statements = ast.walk(tree) if everywhere else _load_time_statements(tree.body)
    for node in statements:
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
    return found


def import_graph(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ``known`` it imports when loaded. ``from pkg import mod`` is an
    edge to ``pkg.mod`` when that is a module, else to ``pkg``. A module's own ancestors'
    ``__init__`` (which Python loads first) is no edge: it is where a package's names are
    gathered, and a cycle through it is not one a reader has to untangle."""
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets: set[str] = set()
        for module, names in load_time_imports(path, name):
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
            if submodules:
                targets.update(submodules)
            if module in known and len(submodules) < len(names or [None]):
                targets.add(module)
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = targets - ancestors - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (its modules, the first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


_PRIVATE_MEMBER = re.compile(r"\bself\.(_[A-Za-z]\w*)|\bdef (_[A-Za-z]\w*)")


def _private_members(texts: Iterable[str]) -> set[str]:
    """``_name`` members the code defines: ``self._x`` it sets or reads, ``def _x`` (read from
    the text: a name in a comment counts too, which only makes the rule more lenient)."""
    return {a or b for text in texts for a, b in _PRIVATE_MEMBER.findall(text)}


@cache
def aiokafka_private_members() -> frozenset[str]:
    """The private members of aiokafka's classes (read from its installed source)."""
    spec = importlib.util.find_spec("aiokafka")
    assert spec is not None and spec.origin is not None, "aiokafka is not installed"
    source = Path(spec.origin).parent
    return frozenset(_private_members(p.read_text("utf-8") for p in source.rglob("*.py")))


def aiokafka_reaches(path: Path, own_private: set[str]) -> list[str]:
    """Where ``path`` reaches into aiokafka: an import of a private aiokafka module or name, an
    attribute (or ``getattr``/``setattr`` string) that is a private member of aiokafka's and
    not one of ours (``own_private``), on anything but ``self``/``cls``."""
    theirs = aiokafka_private_members() - own_private
    tree = parse(path)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names]
            module = (node.module or "") if isinstance(node, ast.ImportFrom) else ""
            for full in [module] if isinstance(node, ast.ImportFrom) else names:
                parts = full.split(".")
                if parts[0] == "aiokafka" and any(part.startswith("_") for part in parts):
                    found.append(f"{node.lineno}: imports {full}")
            if module.split(".")[0] == "aiokafka":
                found += [f"{node.lineno}: imports {module}.{n}" for n in names if n[0] == "_"]
        elif isinstance(node, ast.Attribute) and node.attr in theirs:
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{node.lineno}: .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in theirs
        ):
            found.append(f"{node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return found


# aiokafka's public modules: the top level and the modules its documentation names (errors,
# structs, the admin client and the config resource its ``describe_configs`` takes, the
# producer's default partitioner, the rebalance listener, the SSL helper). Everything else under
# ``aiokafka.`` (``protocol``, ``client``, ``conn``, ``record``, ``consumer.*``, ...) is its
# inside, for ``streams/kafka/`` alone.
AIOKAFKA_PUBLIC = frozenset(
    {
        "aiokafka",
        "aiokafka.errors",
        "aiokafka.structs",
        "aiokafka.admin",
        "aiokafka.admin.config_resource",
        "aiokafka.partitioner",
        "aiokafka.abc",
        "aiokafka.helpers",
    }
)


def _is_aiokafka_module(dotted: str) -> bool:
    """``dotted`` names a module or package of the installed aiokafka."""
    if dotted.split(".")[0] != "aiokafka":
        return False
    spec = importlib.util.find_spec("aiokafka")
    assert spec is not None and spec.origin is not None, "aiokafka is not installed"
    path = Path(spec.origin).parent.joinpath(*dotted.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def aiokafka_inner_modules(path: Path) -> list[str]:
    """Where ``path`` imports a module of aiokafka outside ``AIOKAFKA_PUBLIC`` (anywhere in
    the module, also inside functions): ``from aiokafka.protocol.api import Request`` and
    ``from aiokafka import conn`` count, ``from aiokafka.errors import KafkaError`` does
    not."""
    found: list[str] = []
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            # ``from aiokafka import conn`` imports the module aiokafka.conn
            modules = [node.module] + [
                f"{node.module}.{a.name}"
                for a in node.names
                if _is_aiokafka_module(f"{node.module}.{a.name}")
            ]
        else:
            continue
        for module in modules:
            if module.split(".")[0] == "aiokafka" and module not in AIOKAFKA_PUBLIC:
                found.append(f"{node.lineno}: imports {module}")
    return found


def own_private_members(paths: Iterable[Path]) -> set[str]:
    """The private members our own code defines (so ``agent._partitions`` is ours, not aiokafka's)."""
    return _private_members(p.read_text("utf-8") for p in paths)
