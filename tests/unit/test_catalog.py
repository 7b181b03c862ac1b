from pathlib import Path

import pytest

from schemas.catalog import load_catalog
from schemas.errors import SchemaError

# Seed 000's table: operation -> (urgency, expected duration ms, session required, batchable).
GHL_OPERATIONS: dict[str, tuple[int, int, bool, bool]] = {
    "conversation_send": (1, 5000, True, False),
    "workflow_trigger": (1, 3000, True, False),
    "calendar_booking": (1, 8000, True, False),
    "contact_create": (2, 4000, True, True),
    "opportunity_create": (2, 5000, True, True),
    "pipeline_update": (2, 3000, True, False),
    "contact_update": (3, 3000, True, True),
    "opportunity_update": (3, 4000, True, True),
    "task_create": (3, 2000, True, True),
    "note_create": (3, 2000, True, True),
    "custom_field_update": (3, 2500, True, True),
    "campaign_add": (4, 3000, True, True),
    "campaign_remove": (4, 3000, True, True),
    "tag_add": (4, 1500, True, True),
    "tag_remove": (4, 1500, True, True),
    "conversation_read": (4, 2000, True, False),
    "contact_delete": (5, 3000, True, True),
    "bulk_operation": (5, 30000, True, False),
    "report_generate": (5, 15000, True, False),
    "data_export": (5, 20000, True, False),
    "integration_sync": (5, 10000, False, False),
}

# Seed 001's task types: operation -> session required.
TASK_TYPES: dict[str, bool] = {
    "api_call": False,
    "ghl_action": False,
    "notification": False,
    "reminder": False,
    "report_generation": False,
    "browser_automation": True,
    "data_extraction": True,
}


def test_default_catalog_has_the_21_ghl_operations() -> None:
    catalog = load_catalog()
    assert len(GHL_OPERATIONS) == 21
    for name, (urgency, duration, session, batchable) in GHL_OPERATIONS.items():
        spec = catalog[name]
        assert (spec.urgency, spec.expected_duration_ms) == (urgency, duration), name
        assert (spec.session_required, spec.batchable) == (session, batchable), name


def test_default_catalog_has_the_seed_001_task_types() -> None:
    catalog = load_catalog()
    assert set(catalog) == set(GHL_OPERATIONS) | set(TASK_TYPES)
    assert len(catalog) == 28
    for name, session in TASK_TYPES.items():
        spec = catalog[name]
        assert spec.session_required is session, name
        assert spec.batchable is False, name
        assert 1 <= spec.urgency <= 5 and spec.expected_duration_ms > 0


def test_override_replaces_and_adds(tmp_path: Path) -> None:
    path = tmp_path / "ops.toml"
    path.write_text(
        "[operations.tag_add]\nurgency = 2\nexpected_duration_ms = 10\nbatchable = false\n"
        "[operations.fax_send]\nurgency = 3\nexpected_duration_ms = 1000\nsession_required = false\n"
        "[operations.api_call]\nurgency = 1\nexpected_duration_ms = 500\n"
    )
    catalog = load_catalog(path)
    assert catalog["tag_add"].urgency == 2 and catalog["tag_add"].batchable is False
    assert catalog["fax_send"].session_required is False
    assert catalog["api_call"].urgency == 1
    assert catalog["api_call"].session_required is True  # the override replaces the whole entry
    assert len(catalog) == 29


def test_bad_override_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "ops.toml"
    path.write_text("[operations.x]\nurgency = 9\nexpected_duration_ms = 1\n")
    with pytest.raises(SchemaError, match="operations.x.urgency"):
        load_catalog(path)
