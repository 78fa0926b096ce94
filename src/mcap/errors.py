"""The one exception type a user is meant to read."""


class McapError(Exception):
    """Bad input: the message names the file, row or params key and what is accepted.

    Stage scripts turn it into a one-line ``error: ...`` on stderr and exit status 2.
    """
