"""Text answers for an operator's shell.

The manhole shows what a Deferred fires with as its ``repr``: a multi-line
story (``aggregator.why``, ``home.why``) would come out as one quoted line
full of ``\\n``.  ``Text`` is a ``str`` whose ``repr`` is the text itself
(the manhole's terminal makes each line end a terminal line end).
"""


class Text(str):
    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)
