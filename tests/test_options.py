"""Flags, files and saved runs from one configuration: `unrolled.options` on a small configuration of its own."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from unrolled.options import add_flags, apply_flags, apply_values, option, read_config, to_json


@dataclass
class Data:
    files: tuple[str, ...] = field(default=(), metadata=option("input files", positional="*", metavar="FILE"))
    batch_size: int = field(default=8, metadata=option("items per batch", aliases=("--batch",)))
    limit: float | None = field(default=None, metadata=option("a cap"))


@dataclass
class Model:
    hidden: int = field(default=16, metadata=option("units"))
    cell: str = field(default="lstm", metadata=option("cell", choices=("rnn", "lstm", "gru")))
    bidirectional: bool = field(default=True, metadata=option("both ways", negate=("--unidirectional",)))
    widths: tuple[int, ...] = field(default=(3, 4), metadata=option("widths"))
    hidden_flag_only_in_files: int = field(default=1, metadata=option("not a flag", flag=False))


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)


def parse(argv: list[str], config: Config | None = None) -> Config:
    parser = argparse.ArgumentParser()
    add_flags(parser, config or Config())
    return apply_flags(config or Config(), parser.parse_args(argv))


def test_flags_set_only_what_they_name() -> None:
    assert parse([]) == Config()
    config = parse(["a.txt", "b.txt", "--hidden", "32", "--batch", "4", "--unidirectional", "--widths", "5,6,7"])
    assert config.data == Data(files=("a.txt", "b.txt"), batch_size=4)
    assert config.model == Model(hidden=32, bidirectional=False, widths=(5, 6, 7))
    assert parse(["--no-bidirectional"]).model.bidirectional is False
    assert parse(["--batch-size", "2", "--limit", "0.5"]).data == Data(batch_size=2, limit=0.5)


def test_defaults_come_from_the_configuration_given() -> None:
    base = Config(model=Model(hidden=99))
    assert parse(["--cell", "gru"], base).model == Model(hidden=99, cell="gru")


@pytest.mark.parametrize("argv", [["--hidden", "many"], ["--cell", "transformer"],
                                  ["--hidden-flag-only-in-files", "2"]])
def test_bad_flags_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(argv)


def test_a_file_sets_fields_by_section_or_by_name_and_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  hidden: 64\n  widths: [2, 3]\nbatch_size: 3\n")
    config = apply_values(Config(), read_config(path))
    assert config.model.hidden == 64 and config.model.widths == (2, 3) and config.data.batch_size == 3
    parser = argparse.ArgumentParser()
    add_flags(parser, config)
    assert apply_flags(config, parser.parse_args(["--hidden", "8"])).model.hidden == 8


def test_a_saved_configuration_reads_back_whole(tmp_path: Path) -> None:
    config = Config(Data(files=("x",), batch_size=2), Model(hidden=5, widths=(1,)))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"kind": "toy", "config": to_json(config), "step": 3}))
    assert apply_values(Config(), read_config(path)) == config


@pytest.mark.parametrize(("text", "message"), [
    ('{"hiden": 3}', r"unknown option\(s\) hiden"),
    ('{"model": {"cells": "gru"}}', "model.cells"),
    ("[1, 2]", "expected a mapping"),
    ("{oops", "not valid JSON"),
])
def test_bad_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        apply_values(Config(), read_config(path))
    assert "\n" not in str(error.value)


def test_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        read_config(tmp_path / "absent.yaml")


def test_two_fields_may_not_share_a_flag() -> None:
    @dataclass
    class Clash:
        a: Data = field(default_factory=Data)
        b: Data = field(default_factory=Data)

    with pytest.raises(ValueError, match="--batch-size"):
        add_flags(argparse.ArgumentParser(), Clash())
