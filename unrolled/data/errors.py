"""The one error type of the data package."""

from __future__ import annotations


class DataError(ValueError):
    """Data that cannot be obtained or read: a download that failed or does not match its pin, an unsafe or
    malformed archive, a dataset file in the wrong shape. The message is one line that names the package or
    file and, where there is something to do, says what.

    A ValueError, so the command line's handler prints it as its one error line.
    """
