"""The base class of every error that hlsm raises for bad input.

The command line turns an :class:`HLSMError` into one message and exit code 2; anything else is a
bug and keeps its traceback.
"""


class HLSMError(ValueError):
    """Bad input: the message names the input and the fix."""


class SlipWarning(UserWarning):
    """Input that is valid but probably not what was meant (two skills equal on the spec's states, a
    candidate that a support shows). The command goes on; ``HLSM_IGNORE_SLIPS=1`` silences it on the
    command line, ``warnings.filterwarnings("ignore", category=SlipWarning)`` in Python."""


class InputError(HLSMError):
    """An input file that cannot be read as text: missing, a folder, unreadable, or not UTF-8."""


MESSAGE_LIMIT = 600
"""Longest error message the command line prints: an echoed input is cut in the middle beyond it."""


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` itself, or its start and end with the number of characters cut between them."""
    if len(text) <= limit:
        return text
    keep = (limit - 40) // 2
    return f"{text[:keep]} [... {len(text) - 2 * keep:,} characters cut ...] {text[-keep:]}"
