"""The status file (jeisson.status_file): its JSON written in short pieces,
and, with an offload, encoded and written off the reactor's thread one
write at a time; real files under tmp_path, a ``task.Clock``, the offload
held until the test runs it."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent

from jeisson.status_file import SPLIT_ABOVE, StatusFileService, pieces, write_atomically

pytestmark = pytest.mark.usefixtures("logs")

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=SPLIT_ABOVE + 3), max_leaves=200)


@settings(max_examples=100)
@given(st.dictionaries(st.text(max_size=4), json_values, max_size=8))
def test_the_pieces_are_the_json_of_the_data(data):
    text = "".join(pieces(data))
    assert json.loads(text) == data
    assert json.dumps(json.loads(text), sort_keys=True) == json.dumps(data, sort_keys=True)


def test_a_large_dict_is_an_entry_a_line_each_piece_short():
    homes = {f"h{i:05d}": {"connected": True, "loads": [{"id": "heater", "on": i % 2 == 0}]} for i in range(1000)}
    data = {"at": "2026-12-03T18:00:00.000Z", "homes": homes, "last_round": {"number": 4, "homes": homes}}
    parts = list(pieces(data))
    assert json.loads("".join(parts)) == data
    assert max(len(p) for p in parts) < 100, "no piece holds more than one home"
    lines = "".join(parts).splitlines()
    assert lines[0] == "{" and lines[1] == ' "at": "2026-12-03T18:00:00.000Z",'
    assert lines[3] == '  "h00000": {"connected": true, "loads": [{"id": "heater", "on": true}]},'
    assert sum(1 for line in lines if '"h00999"' in line) == 2  # the homes, and the round's table


class HeldOffload:
    """``deferToThread`` as the test says: each job runs when it is told."""

    def __init__(self):
        self.waiting: list[tuple] = []

    def __call__(self, function, *args):
        d = Deferred()
        self.waiting.append((function, args, d))
        return d

    def run_one(self, error: Exception | None = None):
        function, args, d = self.waiting.pop(0)
        if error is not None:
            d.errback(error)
        else:
            d.callback(function(*args))


def service_for(tmp_path, state):
    offload = HeldOffload()
    path = tmp_path / "status.json"
    service = StatusFileService(lambda: dict(state), str(path), Clock(), offload=offload)
    return service, offload, path


def test_with_an_offload_the_snapshot_is_taken_at_once_and_written_there_one_write_at_a_time(tmp_path):
    state = {"round": 1}
    service, offload, path = service_for(tmp_path, state)
    service.startService()
    assert len(offload.waiting) == 1 and not path.exists(), "encoded and written in the offload's thread"
    state["round"] = 2  # after the snapshot: the write in flight shows round 1
    service.changed()
    service.clock.advance(0.5)
    assert len(offload.waiting) == 1, "one write at a time"
    offload.run_one()
    assert json.loads(path.read_text()) == {"round": 1}
    service.clock.advance(0.5)
    offload.run_one()
    assert json.loads(path.read_text()) == {"round": 2}
    service.clock.advance(0.5)
    assert offload.waiting == [], "nothing changed: no write"
    service.stopService()


def test_a_failed_write_is_logged_and_made_again(tmp_path, logs):
    service, offload, path = service_for(tmp_path, {"round": 1})
    service.startService()
    offload.run_one(OSError(28, "No space left on device"))
    assert [formatEvent(e) for e in logs if "log_failure" in e] == [f"could not write the status file {path}"]
    logs[:] = [e for e in logs if "log_failure" not in e]  # seen: not a failure of the test
    service.clock.advance(0.5)
    offload.run_one()
    assert json.loads(path.read_text()) == {"round": 1}
    service.stopService()


def test_stopping_waits_for_the_write_in_flight_then_writes_the_last_state(tmp_path):
    state = {"round": 1}
    service, offload, path = service_for(tmp_path, state)
    service.startService()
    state["round"] = 3
    service.changed()
    stopped = service.stopService()
    assert not path.exists() and not stopped.called, "the write in flight first"
    offload.run_one()
    assert stopped.called
    assert json.loads(path.read_text()) == {"round": 3}, "the last state, written as the program stops"
    assert offload.waiting == []


def test_the_file_is_replaced_whole(tmp_path):
    path = tmp_path / "status.json"
    path.write_text("old")
    write_atomically(str(path), {"homes": {f"h{i}": i for i in range(SPLIT_ABOVE + 1)}})
    assert json.loads(path.read_text())["homes"]["h0"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]
