"""Named task templates as the defaults of a SubmitTask (``SubmitTask.template``).

A submit naming a template of its client takes the template's fields for every field it left at
its default (``payload`` keys merge, the submit's win); the resolved command is what the
submission checks and ``task.accepted`` see. Schedules resolve their template once, at creation
(``streams.domain.schedules``); a submit resolves it when it is decided, so a redelivered submit
after the template changed is a different specification (refused as such, the task unchanged).
"""

from __future__ import annotations

from typing import Any, Final

from schemas import commands as cmd
from schemas.recurrence import submit_of
from streams.domain.context import Decision
from streams.domain.records import template_id

_NOT_FROM_TEMPLATE: Final = frozenset({"client_id", "task_id", "template", "actor"})


def with_template(ctx: Decision, c: cmd.SubmitTask) -> cmd.SubmitTask | str:
    """``c`` with its template's defaults, or why it has none (``template: ...``)."""
    name = getattr(c, "template", None)
    if not isinstance(name, str):
        return c
    template = ctx.state.templates.get(template_id(c.client_id, name))
    if template is None:
        return f"template: unknown template {name[:100]!r}"
    model_fields = type(c).model_fields
    fields: dict[str, Any] = {name: getattr(c, name) for name in model_fields}
    for key, value in template.task.items():
        if key in _NOT_FROM_TEMPLATE or key not in model_fields:
            continue
        if key == "payload" and isinstance(value, dict):
            fields["payload"] = {**value, **fields["payload"]}
        elif fields[key] == model_fields[key].get_default(call_default_factory=True):
            fields[key] = value
    return submit_of(fields)
