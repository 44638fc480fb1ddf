"""A small deterministic YAML writer for the generated rules and manifests.

PyYAML is only a development dependency, and the shapes here are plain: mappings, lists,
strings, numbers and booleans. Strings are single-quoted, JSON-quoted (a YAML double-quoted
scalar) or, when they span lines, block literals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")


def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) else json.dumps(key)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if value is None:
        return "null"
    text = str(value)
    if "'" not in text and text.isprintable():
        return f"'{text}'"
    return json.dumps(text)


def _block(text: str, indent: int) -> list[str]:
    chomp = "" if text.endswith("\n") and not text.endswith("\n\n") else "-"
    pad = " " * indent
    return [
        f"|{chomp}",
        *[f"{pad}{line}" if line else "" for line in text.rstrip("\n").split("\n")],
    ]


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            lines.extend(_entry(f"{pad}{_key(str(key))}:", item, indent))
        return lines
    if isinstance(value, Sequence) and not isinstance(value, str):
        for item in value:
            if isinstance(item, Mapping) and item:
                inner = _lines(item, indent + 2)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines.extend(inner[1:])
            else:
                lines.extend(_entry(f"{pad}-", item, indent))
        return lines
    return [f"{pad}{_scalar(value)}"]


def _entry(prefix: str, item: Any, indent: int) -> list[str]:
    if isinstance(item, Mapping):
        return [f"{prefix} {{}}"] if not item else [prefix, *_lines(item, indent + 2)]
    if isinstance(item, Sequence) and not isinstance(item, str):
        return [f"{prefix} []"] if not item else [prefix, *_lines(item, indent + 2)]
    if isinstance(item, str) and "\n" in item:
        first, *rest = _block(item, indent + 2)
        return [f"{prefix} {first}", *rest]
    return [f"{prefix} {_scalar(item)}"]


def dump(document: Any, header: str = "") -> str:
    comment = [f"# {line}" if line else "#" for line in header.splitlines()]
    return "\n".join([*comment, *_lines(document, 0)]) + "\n"


def dump_all(documents: Sequence[Any], header: str = "") -> str:
    parts = [dump(doc).rstrip("\n") for doc in documents]
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + "---\n" + "\n---\n".join(parts) + "\n"
