"""A story for the manhole is shown as written, not as a quoted line."""

from twisted.conch.insults.insults import ServerProtocol
from twisted.conch.manhole import Manhole
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport

from jeisson.text import Text


def test_the_manhole_shows_a_deferred_text_line_by_line():
    terminal = ServerProtocol(Manhole, {})
    transport = StringTransport()
    terminal.makeConnection(transport)
    shell = terminal.terminalProtocol
    d: Deferred = Deferred()
    shell.interpreter.displayhook(d)
    transport.clear()
    d.callback(Text("home h1, load heater: off\n- shed in round 3"))
    shown = transport.value().decode()
    assert "called back: home h1, load heater: off\r\n- shed in round 3" in shown.replace("\r\r", "\r")
    assert "\\n" not in shown and "'" not in shown


def test_text_is_still_a_string():
    assert Text("a\nb") == "a\nb" and Text("a\nb").splitlines() == ["a", "b"]
