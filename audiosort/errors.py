"""The one exception family for user mistakes, and the integer checks that raise it.

Anything raised as an :class:`AudiosortError` is the user's to fix (a bad path,
a config typo, a file that is not audio); ``audiosort.cli`` prints its message
as one line on stderr and exits with code 2. Every other exception is a bug and
keeps its traceback.
"""


import numbers


class AudiosortError(Exception):
    """A user error; the message names the bad value and where it came from."""


class ConfigError(AudiosortError):
    """A config file or ``--set`` override is invalid."""


class InputError(AudiosortError):
    """A path, corpus or data file given by the user cannot be used."""


class DecodeError(AudiosortError):
    """One audio file cannot be decoded; ``prepare`` skips it and records why."""


def is_int(value) -> bool:
    """Whether ``value`` is an integer, Python's or NumPy's, and not a bool (``True`` is an int in Python)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(value, flag: str) -> None:
    """Raise :class:`InputError` unless ``value`` is an int >= 1 (a bool is not); ``flag`` names it: ``"--steps"``."""
    if not is_int(value) or value < 1:
        raise InputError(f"{flag} {value!r} must be an int >= 1")
