"""The base class of every error that hlsm raises for bad input.

The command line turns an :class:`HLSMError` into one message and exit code 2; anything else is a
bug and keeps its traceback.
"""


class HLSMError(ValueError):
    """Bad input: the message names the input and the fix."""
