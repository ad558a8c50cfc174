"""The quick reading of aggregator <-> home lines as jeisson writes them.

Most of the traffic is three kinds of line (a round is a ``BUDGET`` to every
home and a ``FLEX`` and a ``COMMIT`` from each).  Written by jeisson, such a
line has one exact shape: keys in one order, no spaces, numbers without
exponents.  ``read`` recognises that shape whole, values and all, with one
pattern per verb, and builds the message without the per-field checks,
which the pattern has made.  Any other line, valid or not, gets None and
takes the full reading (``aggregator_home``), which names what is wrong.

The invariant: for every line and version, ``read`` gives None or exactly
the message the full reading gives, and ``parse_line`` therefore answers
every line (message, or error code and detail) as the full reading alone
would.  The pattern admits no ``NaN`` or ``Infinity`` and names each key
once, so the full reading's JSON rules (RFC 8259 numbers, no duplicate key)
hold here by construction.  Property tests in
``tests/test_wire_aggregator_home.py`` hold the invariant:
``test_the_quick_reading_agrees_with_the_full_one_on_written_and_corrupted_lines``,
``test_the_quick_reading_agrees_with_the_full_one_at_every_fields_limits``
and ``test_the_quick_reading_agrees_with_the_full_one_at_the_most_loads``;
``test_the_quick_reading_takes_what_jeisson_writes`` holds that it serves
what jeisson writes, and ``test_the_quick_reading_refuses_what_rfc_8259_does_not_allow``
that non-JSON numbers and repeated keys leave it for the full checks.
"""

import json
import re

from jeisson.wire.aggregator_home_messages import (
    ID_FORM,
    MAX_LOADS,
    Budget,
    Commit,
    Flex,
    LoadOffer,
    reject_constant,
)
from jeisson.wire.utc import UTC_FORM, utc_seconds

_ID = ID_FORM.encode()  # in a bytes pattern, \d and the classes are ASCII only
_COUNT = rb"(?:0|[1-9][0-9]{0,14})"  # at most 15 digits: below 2**53
_WATTS = rb"(?:0|[1-9][0-9]{0,6})(?:\.[0-9]+)?"  # below MAX_POWER_W, no exponent
_FLOAT_WATTS = rb"(?:0|[1-9][0-9]{0,6})\.[0-9]+"  # and with a point: a JSON float
_BOOL = rb"(?:true|false)"
_IDS = rb'(?:"%s"(?:,"%s"){0,%d})?' % (_ID, _ID, MAX_LOADS - 1)
_LOAD = rb'\["%s",%s,(?:100|[1-9][0-9]?),"(?:must|may|off)",%s,%s,%s\]' % (_ID, _FLOAT_WATTS, _BOOL, _BOOL, _BOOL)
_FLEX_V2 = re.compile(rb'FLEX \{"bid":%s,"opt_out":%s,"loads":\[(?:%s(?:,%s){0,%d})?\]\}\Z'
                      % (_COUNT, _BOOL, _LOAD, _LOAD, MAX_LOADS - 1))
_COMMIT = re.compile(rb'COMMIT \{"round":(%s),"bid":(%s),"committed_w":(%s),"on":\[(%s)\]\}\Z'
                     % (_COUNT, _COUNT, _WATTS, _IDS))
_BUDGET = re.compile(rb'BUDGET \{"round":(%s),"bid":(%s),"event":"(%s)","budget_w":(%s),"end":"(%s)"\}\Z'
                     % (_COUNT, _COUNT, _ID, _WATTS, UTC_FORM.encode()))
_row = LoadOffer._make
# Without the full reading's duplicate-key check: the pattern names each key
# once, and the check would cost 3 us of a 6.5 us FLEX.
_decode = json.JSONDecoder(parse_constant=reject_constant).decode


def read(line: bytes, version: int) -> Flex | Commit | Budget | None:
    """The message of a line as jeisson writes it, or None."""
    if line.startswith(b"FLEX ") and version >= 2 and _FLEX_V2.match(line):
        body = _decode(line[5:].decode())  # str: json works out a bytes body's encoding in Python
        # The pattern makes each power a JSON float (it has a point), as the
        # full path's float() would.
        loads = tuple(map(_row, body["loads"]))
        if len({load.id for load in loads}) == len(loads):
            return Flex(body["bid"], loads, body["opt_out"])
    elif line.startswith(b"COMMIT ") and (match := _COMMIT.match(line)):
        round_, bid, committed_w, on = match.groups()
        ids = tuple(on[1:-1].decode("ascii").split('","')) if on else ()
        if len(set(ids)) == len(ids):
            return Commit(int(round_), int(bid), float(committed_w), ids)
    elif line.startswith(b"BUDGET ") and (match := _BUDGET.match(line)):
        round_, bid, event, budget_w, end = match.groups()
        try:
            end_s = utc_seconds(end.decode("ascii"))
        except ValueError:  # no such day: the full path says so
            return None
        return Budget(int(round_), int(bid), event.decode("ascii"), float(budget_w), end_s)
    return None
