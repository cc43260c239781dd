"""User-facing errors.

`InputError` is raised for bad input (shapes, dtypes, files, parameters). It subclasses `ValueError`
so library callers can catch either; the CLI turns it into one line on stderr and exit code 2.
"""


class InputError(ValueError):
    """Bad input from a user or a file; the message names what was expected and what came."""
