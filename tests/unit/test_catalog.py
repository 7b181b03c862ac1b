from pathlib import Path

import pytest

from schemas.catalog import load_catalog
from schemas.errors import SchemaError


def test_default_catalog_has_the_21_ghl_operations() -> None:
    catalog = load_catalog()
    assert len(catalog) == 21
    assert catalog["conversation_send"].urgency == 1
    assert catalog["tag_add"].batchable is True
    assert catalog["integration_sync"].session_required is False
    assert catalog["bulk_operation"].expected_duration_ms == 30000


def test_override_replaces_and_adds(tmp_path: Path) -> None:
    path = tmp_path / "ops.toml"
    path.write_text(
        "[operations.tag_add]\nurgency = 2\nexpected_duration_ms = 10\nbatchable = false\n"
        "[operations.api_call]\nurgency = 3\nexpected_duration_ms = 1000\nsession_required = false\n"
    )
    catalog = load_catalog(path)
    assert catalog["tag_add"].urgency == 2 and catalog["tag_add"].batchable is False
    assert catalog["api_call"].session_required is False
    assert len(catalog) == 22


def test_bad_override_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "ops.toml"
    path.write_text("[operations.x]\nurgency = 9\nexpected_duration_ms = 1\n")
    with pytest.raises(SchemaError, match="operations.x.urgency"):
        load_catalog(path)
