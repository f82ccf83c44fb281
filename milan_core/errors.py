"""The one exception type for mistakes a person can fix (bad paths, unknown names, empty folders).

The command line turns a ``UserError`` into a one-line message and exit code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from a person: the message says what is wrong and what to do."""
