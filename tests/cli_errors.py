"""A check shared by the command-line tests: bad input ends in exit status 2 and exactly one line on stderr."""

from __future__ import annotations

import pytest


def one_error_line(capsys: pytest.CaptureFixture[str], code: int, *fragments: str) -> str:
    """The one stderr line of a failed command; asserts status 2, one line, and that it names each fragment."""
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err
