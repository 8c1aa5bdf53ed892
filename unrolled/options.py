"""Configurations as dataclasses, and the one helper that turns them into command-line flags and files.

An application's configuration is a dataclass of sections, each a dataclass
of fields (``data``, ``model``, ``train``: `unrolled.training.TrainConfig`).
Everything a flag needs is stated once, on the field::

    hidden: int = field(default=150, metadata=option("units per direction", aliases=("--hidden-size",)))

- the flag is ``--`` + the field's name with dashes (``--hidden``), plus its `aliases`;
- its type comes from the annotation: ``int``, ``float``, ``str``, ``bool``,
  ``X | None``, ``tuple[int, ...]`` (written ``3,4,5``); metadata ``parse`` names
  a parser for text (``"duration"``: 90s, 10m, 1.5h);
- `choices`, `metavar` and `help` from the metadata; the default is the
  section's value in the configuration the flags are added for, so an
  application's defaults live in its configuration only;
- a bool gets ``--name`` (True) and ``--no-name`` (False), and the spellings in
  `negate` (``--unidirectional`` for ``bidirectional``);
- ``positional`` (an argparse nargs) makes the field the command's positional
  argument; ``nargs`` lets a tuple's flag take its items as separate words
  (``--speeds 0.9 1 1.1``); ``flag=False`` keeps a field out of the command line (still in files).

Flag names are unique across a configuration's sections (checked when the
flags are added), so a file may set a field by its bare name too.

`read_config` reads a YAML or JSON file of values: nested by section
(``{"model": {"hidden": 64}}``), flat (``{"hidden": 64, "lr": 1e-3}``), or a run's
own ``config.json`` (which saves the complete configuration), so
``unrolled APP train --config RUN/config.json --out NEW`` repeats a run.
`apply_values` sets them on a configuration; `apply_flags` then sets what the
command line gave: flags win over the file, the file over the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")
SAVED_KEY = "config"
"""Where a run's config.json keeps its application's sections (the trainer saves ``train`` beside it)."""


def option(help: str, *, aliases: tuple[str, ...] = (), choices: tuple[Any, ...] | None = None,
           metavar: str | None = None, parse: str | None = None, negate: tuple[str, ...] = (),
           positional: str | None = None, nargs: str | None = None, flag: bool = True) -> dict[str, Any]:
    """The metadata of a configuration field (see the module docstring)."""
    meta: dict[str, Any] = {"help": help, "aliases": aliases, "negate": negate, "flag": flag}
    for key, value in (("choices", choices), ("metavar", metavar), ("parse", parse), ("positional", positional),
                       ("nargs", nargs)):
        if value is not None:
            meta[key] = value
    return meta


# ---------------------------------------------------------------------- types


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(kind: Any) -> tuple[Any, bool]:
    """(X, True) for ``X | None``; (kind, False) otherwise."""
    args = typing.get_args(kind)
    if (typing.get_origin(kind) in (typing.Union, types.UnionType)) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        return (rest[0] if len(rest) == 1 else Any), True
    return kind, False


def _parser_of(kind: Any, meta: Mapping[str, Any]) -> Callable[[str], Any]:
    """A function from the flag's text to the field's value; argparse reports its errors in one line."""
    parse = meta.get("parse")
    if parse == "duration":
        from unrolled.training import parse_duration

        return _checked(parse_duration, "a duration such as 90s, 10m or 1.5h")
    if callable(parse):
        return _checked(parse, "a valid value")
    base, _ = _strip_optional(kind)
    origin = typing.get_origin(base)
    if origin in (tuple, list):
        items = typing.get_args(base)
        item = items[0] if items else str
        one = _parser_of(item, {})

        def sequence(text: str) -> Any:
            values = [one(part.strip()) for part in text.split(",") if part.strip()]
            return tuple(values) if origin is tuple else values

        return sequence
    if base is int:
        return _checked(int, "a whole number")
    if base is float:
        return _checked(_finite, "a number")
    return str


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _checked(parse: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except (ValueError, TypeError):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return convert


def flag_name(field: dataclasses.Field[Any]) -> str:
    return "--" + field.name.replace("_", "-")


def sections(config: Any) -> list[tuple[str, Any]]:
    """The (name, value) of each dataclass section of a configuration, in order."""
    return [(item.name, getattr(config, item.name)) for item in dataclasses.fields(config)
            if dataclasses.is_dataclass(getattr(config, item.name))]


def _leaf_fields(config: Any) -> list[tuple[str, dataclasses.Field[Any], Any, Any]]:
    """(section, field, value, type) of every field; a flat options dataclass is its own section ""."""
    parts = sections(config) or [("", config)]
    found = []
    for section, value in parts:
        hints = _field_types(type(value))
        for item in dataclasses.fields(value):
            if item.init:
                found.append((section, item, getattr(value, item.name), hints[item.name]))
    return found


# ---------------------------------------------------------------------- flags


def add_flags(parser: argparse.ArgumentParser, config: Any, *, titles: Mapping[str, str] | None = None) -> None:
    """Add a flag for every field of `config` (a configuration of sections, or one flat options dataclass).

    Values are stored under ``section.field`` only when given (`apply_flags` reads them).
    """
    groups: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for section, item, value, kind in _leaf_fields(config):
        meta = item.metadata
        if not meta.get("flag", True):
            continue
        if section not in groups:
            groups[section] = parser.add_argument_group((titles or {}).get(section, section)) if section else parser
        group = groups[section]
        dest = f"{section}.{item.name}" if section else item.name
        base, optional = _strip_optional(kind)
        help_text = meta.get("help", "")
        names = [flag_name(item), *meta.get("aliases", ())]
        sequence = typing.get_origin(base) in (tuple, list)
        one = _parser_of(typing.get_args(base)[0] if sequence else kind, meta)
        if "positional" in meta:
            group.add_argument(dest, nargs=meta["positional"], metavar=meta.get("metavar", item.name.upper()),
                               type=one, default=argparse.SUPPRESS, help=help_text)
            continue
        if base is bool:
            extra = meta.get("negate", ())
            extra = (extra,) if isinstance(extra, str) else extra
            negations = list(dict.fromkeys((f"--no-{item.name.replace('_', '-')}", *extra)))
            names = [name for name in names if name not in negations]
            for name in (*names, *negations):
                if name in seen:
                    raise ValueError(f"flag {name} of {dest} is also {seen[name]}'s")
                seen[name] = dest
            state = "on" if value else "off"
            group.add_argument(*names, dest=dest, action="store_const", const=True, default=argparse.SUPPRESS,
                               help=f"{help_text} (default: {state})")
            group.add_argument(*negations, dest=dest, action="store_const", const=False,
                               default=argparse.SUPPRESS, help=f"turn off: {help_text}" if value else
                               argparse.SUPPRESS)
            continue
        for name in names:
            if name in seen:
                raise ValueError(f"flag {name} of {dest} is also {seen[name]}'s")
            seen[name] = dest
        shown = _show(value)
        default_text = f" (default: {shown})" if value is not None else (" (default: none)" if optional else "")
        nargs = meta.get("nargs") if sequence else None
        group.add_argument(*names, dest=dest, type=one if nargs else _parser_of(kind, meta), nargs=nargs,
                           choices=meta.get("choices"),
                           metavar=meta.get("metavar", None if meta.get("choices") else item.name.upper()),
                           default=argparse.SUPPRESS,
                           help=(help_text + default_text).replace("%", "%%"))


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(item) for item in value)
    return str(value)


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The flags the command line set, as ``{"section.field": value}`` (empty positional lists left out)."""
    return {key: value for key, value in vars(args).items() if "." in key and value != []}


def apply_flags(config: C, args: argparse.Namespace) -> C:
    """`config` with every field the command line set (see `add_flags`)."""
    values: dict[str, dict[str, Any]] = {}
    flat = not sections(config)
    for key, value in vars(args).items():
        if value == [] and not flat:
            continue
        section, _, name = key.rpartition(".")
        if isinstance(value, list):  # a positional's values; a tuple where the field is one
            value = tuple(value)
        if flat and not section and any(item.name == key for item in dataclasses.fields(config)):  # type: ignore
            values.setdefault("", {})[key] = value
        elif section:
            values.setdefault(section, {})[name] = value
    return _replace(config, values)


def _replace(config: C, values: Mapping[str, Mapping[str, Any]]) -> C:
    if not sections(config):
        return dataclasses.replace(config, **values.get("", {})) if values.get("") else config  # type: ignore
    changes = {}
    for section, value in sections(config):
        if values.get(section):
            changes[section] = dataclasses.replace(value, **values[section])
    return dataclasses.replace(config, **changes) if changes else config  # type: ignore


# ---------------------------------------------------------------------- files


def read_config(path: str | Path) -> dict[str, Any]:
    """The values of a YAML or JSON file (by suffix: .yaml/.yml, else JSON); one-line errors."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"--config {path}: no such file") from None
    try:
        values = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise ValueError(f"--config {path}: not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'}"
                         f" ({' '.join(str(error).split())[:160]})") from None
    if not isinstance(values, dict):
        raise ValueError(f"--config {path}: expected a mapping of option names to values, got {type(values).__name__}")
    return values


def apply_values(config: C, values: Mapping[str, Any], *, source: str = "the configuration") -> C:
    """`config` with `values` set: by section, by bare field name, or a run's config.json (see the docstring)."""
    if isinstance(values.get(SAVED_KEY), dict):  # a run's config.json: the sections, and the trainer's "train"
        values = {**values[SAVED_KEY], **({"train": values["train"]} if isinstance(values.get("train"), dict)
                                          else {})}
    fields = _leaf_fields(config)
    by_section = {section for section, *_ in fields}
    by_name: dict[str, list[tuple[str, dataclasses.Field[Any], Any]]] = {}
    for section, item, _, kind in fields:
        by_name.setdefault(item.name, []).append((section, item, kind))
        by_name.setdefault(item.name.replace("_", "-"), []).append((section, item, kind))
    changes: dict[str, dict[str, Any]] = {}
    unknown = []

    def put(section: str, name: str, value: Any) -> None:
        for candidate_section, item, kind in by_name.get(name, []):
            if candidate_section == section:
                changes.setdefault(section, {})[item.name] = _coerce(value, kind, item, source)
                return
        unknown.append(f"{section}.{name}" if section else name)

    for key, value in values.items():
        if key in by_section and key and isinstance(value, dict):
            for name, inner in value.items():
                put(key, name, inner)
        elif key in by_name and len({section for section, _, _ in by_name[key]}) == 1:
            put(by_name[key][0][0], key, value)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{source}: unknown option(s) {', '.join(unknown)} (see the command's --help for the names)")
    return _replace(config, changes)


def _coerce(value: Any, kind: Any, item: dataclasses.Field[Any], source: str) -> Any:
    """A file's value as the field's type: lists become tuples, durations and numbers are read from text."""
    base, _ = _strip_optional(kind)
    if value is None:
        return None
    if isinstance(value, str) and (item.metadata.get("parse") or base in (int, float)):
        try:
            return _parser_of(kind, item.metadata)(value)
        except argparse.ArgumentTypeError as error:
            raise ValueError(f"{source}: {item.name}: {error}") from None
    if typing.get_origin(base) is tuple and isinstance(value, list):
        return tuple(value)
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def to_json(config: Any) -> dict[str, Any]:
    """The configuration as plain JSON (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_json(config_type: type[C], values: Mapping[str, Any]) -> C:
    """A configuration of `config_type` (defaults) with the saved `values` set."""
    return apply_values(config_type(), values, source="the saved configuration")


# ---------------------------------------------------------------------- checks


def require_fractions(config: Any, *names: str) -> None:
    """Each named field lies in [0, 1); else a one-line ValueError naming its flag."""
    for name in names:
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a fraction in [0, 1), got {value}")


def require_positive(config: Any, *names: str) -> None:
    """Each named field is a positive whole number (or None, where it may be); else a one-line ValueError."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
