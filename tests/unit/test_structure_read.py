"""The read side's room holds (issue 12): ``projections/`` is the read model only -- the fold,
the tables, the queries, the reader, the store interface and the in-memory store. It imports
nothing of the write side: of ``streams/`` only the process settings, the errors and logging
(``streams.settings``, ``streams.errors``, ``streams.logs``); nothing of the HTTP process
(``api/``, where the projector's Kafka loop and its RocksDB store live); and no plumbing
library (aiokafka, rocksdict, the web stack). Every import counts, also those inside
functions and under ``if TYPE_CHECKING:``, and so does a cycle among the read side's modules
(the one between the fold and the batch-job fold hid under ``TYPE_CHECKING``). The rules every
package keeps (no load-time cycle, no module over 600 lines, ...) are ``test_structure.py``."""

from __future__ import annotations

from pathlib import Path

from tests.support.structure import ROOT, find_cycle, load_time_imports, modules

# What projections/ may take from streams/: the process settings, errors and logging. Nothing
# of the domain, the runtime, the client, redrive, the CLI -- nor the Kafka or RocksDB plumbing
# (``streams.kafka``, ``streams.rocksdb``), which the projector in ``api/`` uses.
STREAMS_ALLOWED = ("streams.settings", "streams.errors", "streams.logs")
# The I/O libraries the read model does without: it folds events it is given and answers from a
# store it is given.
PLUMBING = ("aiokafka", "kafka", "rocksdict", "fastapi", "starlette", "uvicorn", "httpx")


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _imported(path: Path, name: str) -> list[str]:
    """Every name the module imports anywhere, dotted: ``from a.b import c`` gives ``a.b.c``
    (``c`` may be a module: ``from streams import rocksdb``)."""
    found = []
    for module, names in load_time_imports(path, name, everywhere=True):
        found += [f"{module}.{n}" for n in names] if names else [module]
    return found


def _forbidden(module: str) -> bool:
    if _within(module, "api") or any(_within(module, lib) for lib in PLUMBING):
        return True
    if _within(module, "streams"):
        return not any(_within(module, allowed) for allowed in STREAMS_ALLOWED)
    return False


def test_projections_imports_nothing_of_the_write_side_or_the_http_process() -> None:
    read_side = modules(("projections",))
    assert len(read_side) > 10
    found = {
        f"{path.relative_to(ROOT)}: {imported}"
        for name, path in read_side.items()
        for imported in _imported(path, name)
        if _forbidden(imported)
    }
    assert not found, "projections/ imports the write side or api/:\n" + "\n".join(sorted(found))


def test_the_rule_sees_a_forbidden_import(tmp_path: Path) -> None:
    (tmp_path / "projections").mkdir()
    module = tmp_path / "projections" / "m.py"
    module.write_text(
        "from streams.redrive import redrive\nfrom streams.settings import Settings\n"
        "from streams.kafka.profile import broker_profile\nimport streams.client\n"
        "from schemas.masking import mask_text\nfrom streams import rocksdb, redrive, logs\n"
        "from streams.errors import StoreError\nimport pydantic\n"
        "def later():\n    from api.view import create_app\n    import rocksdict\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from streams.domain.spec import canonical_json\n"
        "    from aiokafka import AIOKafkaConsumer\n"
    )
    found = [n for n in _imported(module, "projections.m") if _forbidden(n)]
    assert sorted(found) == [
        "aiokafka.AIOKafkaConsumer",
        "api.view.create_app",
        "rocksdict",
        "streams.client",
        "streams.domain.spec.canonical_json",
        "streams.kafka.profile.broker_profile",
        "streams.redrive",
        "streams.redrive.redrive",
        "streams.rocksdb",
    ]


def _every_import_graph(known: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for imported in _imported(path, name):
            while imported and imported not in known:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not _within(name, imported):
                targets.add(imported)
        graph[name] = targets
    return graph


def test_no_import_cycle_in_the_read_side_counting_every_import() -> None:
    graph = _every_import_graph(modules(("projections", "api")))
    assert len(graph) > 20
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_strict_cycle_rule_sees_one_under_type_checking(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "fold.py").write_text("from pkg.jobs import JOBS\n")
    (tmp_path / "pkg" / "jobs.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.fold import Tables\n"
    )
    graph = _every_import_graph(modules(("pkg",), root=tmp_path))
    assert find_cycle(graph) == ["pkg.fold", "pkg.jobs", "pkg.fold"]
