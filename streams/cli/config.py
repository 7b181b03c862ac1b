"""``taskstream config``: the settings a process would run with, secrets masked.

Every value prints as the environment variable that sets it, so the output is also a template
for an ``.env`` file. ``SecretStr`` settings print as ``**********`` (set) or nothing (unset);
other values pass through ``mask_text`` (a token inside a webhook URL stays hidden).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from schemas.masking import mask_text
from streams.settings import Settings

SECRET_SHOWN = "**********"


def env_name(name: str, info: FieldInfo) -> str:
    """The variable that sets ``name``: the first alias, else the prefixed field name."""
    alias = info.validation_alias
    choices = getattr(alias, "choices", None)
    if choices:
        first = choices[0]
        if isinstance(first, str):
            return first
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return f"{prefix}{name}".upper()


def _shown(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return SECRET_SHOWN
    if value is None or isinstance(value, bool | int | float):
        return value
    return mask_text(str(value))


def masked_settings(settings: Settings) -> dict[str, Any]:
    """Environment variable -> value as shown (secrets masked), in declaration order."""
    return {
        env_name(name, info): _shown(getattr(settings, name))
        for name, info in type(settings).model_fields.items()
    }


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    values = masked_settings(settings)
    if args.json:
        print(json.dumps(values, indent=2))
    else:
        for key, value in values.items():
            shown = (
                "" if value is None else str(value).lower() if isinstance(value, bool) else value
            )
            print(f"{key}={shown}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="print the effective settings (secrets masked)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of KEY=value")
    p.set_defaults(handler=_cmd_config)
