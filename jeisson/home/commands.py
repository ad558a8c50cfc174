"""What a relay command's failure looks like, for the home and its board links."""


class CommandFailed(Exception):
    """A relay command was refused (NAK), timed out, or its board is gone.

    ``code`` is the board's NAK code (``busy``, ``relay``) when it refused.
    """

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code
