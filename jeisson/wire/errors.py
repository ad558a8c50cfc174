import attrs


@attrs.frozen
class ProtocolError(Exception):
    """A line that is not a valid message.

    ``code`` is the machine-readable error code sent back to the peer;
    ``detail`` says, for a human, what was wrong and where.
    """

    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"
