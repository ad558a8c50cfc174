"""The example lines of docs/protocol.rst are exactly what the wire writes.

Every line of a literal block that starts with a sender (``1>A``, ``A>2``,
``B>``, ``H>``) is read back with the wire's parser and written again with
its serializer: it must come out byte for byte.  A line noted
``[invalid: CODE]`` must be refused with that code, and an ``ERROR`` or
``ERR`` line right after it must say what the parser says.  So the document
cannot drift from the code.
"""

import re
from pathlib import Path

import pytest

from jeisson.wire import aggregator_home, board_auth, home_actuator
from jeisson.wire.errors import ProtocolError
from tests.peers import bare

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.rst"
_SENT = re.compile(r"(?P<who>[0-9]>A|A>[0-9]|B>|H>) (?P<line>\S.*?)(?:\s{2,}\[(?P<note>[^\]]*)\])?\Z")


def literal_blocks(text: str) -> list[list[str]]:
    """The literal blocks of an reStructuredText text, as lists of lines
    (without their indentation)."""
    blocks: list[list[str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].rstrip().endswith("::"):
            i += 1
            continue
        i += 1
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
            block.append(lines[i].strip())
            i += 1
        blocks.append([line for line in block if line])
    return blocks


def example_lines() -> list[tuple[str, int, str, str | None, str | None]]:
    """(sender, version, line, note, the next line) for every example line."""
    found = []
    for block in literal_blocks(DOC.read_text(encoding="utf-8")):
        version = 2 if any('WELCOME {"version":2' in line for line in block) else 1
        sent = [match for match in map(_SENT.match, block) if match]
        for k, match in enumerate(sent):
            following = sent[k + 1]["line"] if k + 1 < len(sent) else None
            found.append((match["who"], version, match["line"], match["note"], following))
    return found


EXAMPLES = example_lines()
DR = [e for e in EXAMPLES if e[0][0] != "B" and e[0][0] != "H"]
BOARD = [e for e in EXAMPLES if e[0][0] in "BH"]


def test_the_document_has_examples_of_every_message():
    assert {line.split()[0] for _, _, line, _, _ in DR} == set(aggregator_home.MESSAGES)
    assert {line.split()[0] for _, _, line, _, _ in BOARD} == set(home_actuator.MESSAGES)
    assert {version for _, version, _, _, _ in DR} == {1, 2}


def _check(example, parse, serialize, error_verb) -> None:
    who, version, text, note, following = example
    raw = text.encode()
    if note is not None and note.startswith("invalid: "):
        with pytest.raises(ProtocolError) as info:
            parse(raw)
        assert info.value.code == note.removeprefix("invalid: ")
        if following is not None and following.startswith(error_verb + " "):
            said = parse(following.encode())
            assert (said.code, getattr(said, "detail", info.value.detail)) == (info.value.code, info.value.detail)
        return
    message = parse(raw)
    assert serialize(message) == raw + b"\n"


@pytest.mark.parametrize("example", DR, ids=[f"{e[0]} {e[2][:50]}" for e in DR])
def test_each_aggregator_home_example_is_a_line_as_jeisson_writes_it(example):
    version = example[1]
    _check(example, lambda raw: aggregator_home.parse_line(raw, version),
           lambda message: aggregator_home.serialize(message, version), "ERROR")


@pytest.mark.parametrize("example", BOARD, ids=[f"{e[0]} {e[2][:50]}" for e in BOARD])
def test_each_board_example_is_a_line_as_jeisson_writes_it(example):
    # A version 2 line's counter and MAC are checked with the test vectors.
    who, version, text, note, following = example
    _check((who, version, bare(text.encode()).decode(), note, following), home_actuator.parse_line,
           home_actuator.serialize, "ERR")


def vectors() -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """The test vectors' values and lines (sender, line)."""
    blocks = literal_blocks(DOC.read_text(encoding="utf-8"))
    (block,) = [b for b in blocks if any(x.startswith("board nonce") for x in b)]
    values, lines = {}, []
    for line in block:
        match = _SENT.match(line)
        if match:
            lines.append((match["who"], match["line"].encode()))
        else:
            name, value = line.rsplit(None, 1)
            values[name] = value
    return values, lines


def test_the_test_vectors_are_what_the_scheme_computes():
    values, lines = vectors()
    key = bytes.fromhex(values["key"])
    nonce = board_auth.firmware_nonce(key, int(values["boot"]), int(values["count"]))
    assert nonce == values["board nonce"]
    (who, hello), (_, welcome), (_, auth), *rest = lines
    assert who == "B>" and hello == home_actuator.serialize(
        home_actuator.Hello("home-1-a", 3, 2, (False, True, True), nonce))[:-1]
    to_board, to_home = board_auth.session_keys(key, hello, values["home"], values["home nonce"])
    assert (to_board.hex(), to_home.hex()) == (values["K_hb"], values["K_bh"])
    offer = board_auth.welcome(key, hello, values["home"], 2, values["home nonce"])
    assert offer.welcome == welcome + b"\n"
    said_auth, board = board_auth.accept_welcome(key, hello, welcome, values["home"], values["home nonce"])
    assert said_auth == auth + b"\n"
    board_auth.check_auth(offer, auth)
    home = offer.channel
    for who, line in rest:
        sender, receiver = (home, board) if who == "H>" else (board, home)
        assert sender.seal(bare(line)) == line + b"\n"
        assert receiver.open(line) == bare(line)
    # The replayed SET of the document is refused.
    replayed = next(line for who, line in rest if line.startswith(b"SET "))
    with pytest.raises(board_auth.AuthError):
        board.open(replayed)


def test_rfc_4231_as_the_document_says():
    text = DOC.read_text(encoding="utf-8")
    assert "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" in text
    assert board_auth.mac(b"Jefe", b"what do ya want for nothing?") == b"5bdcc146bf60754e"


def test_a_drifted_example_would_be_found():
    # The reader itself: a line that is not byte-exact, and notes.
    text = 'x::\n\n    1>A PING {"n": 1}\n    B> SET 1 1 1      [a note]\n    H> PING 01\n\nend\n'
    blocks = literal_blocks(text)
    assert blocks == [['1>A PING {"n": 1}', "B> SET 1 1 1      [a note]", "H> PING 01"]]
    matches = [_SENT.match(line) for line in blocks[0]]
    assert [m["note"] for m in matches] == [None, "a note", None]
    assert aggregator_home.serialize(aggregator_home.parse_line(b'PING {"n": 1}')) != b'PING {"n": 1}\n'
    assert home_actuator.serialize(home_actuator.parse_line(b"PING 01")) != b"PING 01\n"
