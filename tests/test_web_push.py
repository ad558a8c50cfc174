"""The live push (jeisson.web.push): a real twisted.web Site over a
StringTransport per client, a real Aggregator (or Home) on a task.Clock
with fake homes (boards), and the server-sent events each client reads."""

import json
import re

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from jeisson.web import dashboard, push
from jeisson.wire import aggregator_home as wire
from tests.peers import Net, Rig
from tests.test_aggregator_core import CONFIG, FIRST_ROUND, H1_LOADS, H2_LOADS

pytestmark = pytest.mark.usefixtures("logs")


IDLE = Clock()  # the HTTP channels' idle timeouts: never advanced


def dechunk(body: bytes) -> bytes:
    """An HTTP/1.1 chunked body as far as it has come."""
    out = b""
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0 or len(rest) < size + 2:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


class Reader:
    """One browser's stream: a real Site's channel on a StringTransport,
    the events it was sent parsed as EventSource parses them."""

    def __init__(self, site: Site, path: bytes = b"/api/v1/stream"):
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        self.channel = site.buildProtocol(self.transport.getPeer())
        # Its idle timeout on a clock nobody advances, not the global reactor's.
        self.channel.callLater = IDLE.callLater
        self.channel.makeConnection(self.transport)
        self.channel.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")

    @property
    def head(self) -> bytes:
        return self.transport.value().partition(b"\r\n\r\n")[0]

    @property
    def text(self) -> bytes:
        return dechunk(self.transport.value().partition(b"\r\n\r\n")[2])

    def events(self, name: str | None = None) -> list[tuple[str, object]]:
        found = []
        for block in self.text.split(b"\n\n"):
            lines = block.split(b"\n")
            event = next((line[7:].decode() for line in lines if line.startswith(b"event: ")), None)
            data = next((line[6:] for line in lines if line.startswith(b"data: ")), None)
            if event is not None and (name is None or event == name):
                found.append((event, json.loads(data)))
        return found

    def data(self, name: str) -> list:
        return [data for _, data in self.events(name)]

    def close(self) -> None:
        self.channel.connectionLost(Failure(ConnectionDone()))


def site_with(stream) -> Site:
    root, api, v1 = Resource(), Resource(), Resource()
    root.putChild(b"api", api)
    api.putChild(b"v1", v1)
    v1.putChild(b"stream", stream)
    return Site(root)


@pytest.fixture
def net():
    return Net(CONFIG)


@pytest.fixture
def stream(net):
    resource = push.aggregator_stream(net.aggregator, net.clock)
    return resource, site_with(resource)


def test_a_new_stream_gets_the_headers_then_a_snapshot_of_status_homes_and_events(net, stream):
    net.home("h1", *H1_LOADS)
    _, site = stream
    reader = Reader(site)
    assert b"200 OK" in reader.head
    assert b"Content-Type: text/event-stream" in reader.head
    assert b"Cache-Control: no-store" in reader.head
    [snapshot] = reader.data("snapshot")
    assert [h["id"] for h in snapshot["homes"]] == ["h1", "h2", "h3", "h4"]
    h1 = snapshot["homes"][0]
    assert h1["connected"] and h1["demand_w"] == 4000.0 and [load["id"] for load in h1["loads"]] == ["oven", "dryer"]
    assert snapshot["status"]["homes"] == {"total": 4, "connected": 1, "silent": 0}
    assert [e["id"] for e in snapshot["events"]] == ["peak"]
    assert snapshot["events"][0]["state"] == "scheduled" and snapshot["events"][0]["starts_in_s"] == FIRST_ROUND
    assert snapshot["status"]["limit_w"] is None and snapshot["rounds"] == []


def test_a_round_is_pushed_at_once_and_the_event_as_it_starts_binding(net, stream):
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    reader = Reader(stream[1])
    net.run_until(FIRST_ROUND)
    [events] = reader.data("events")
    assert events["events"][0]["state"] == "in-force"
    assert reader.data("round") == []
    h1.commit(1, 3000, on=("oven",))
    h2.commit(1, 2000, on=("ev",))
    # At once: no timer ran between the last commitment and the push.
    [round_] = reader.data("round")
    assert round_["number"] == 1 and round_["committed_w"] == 5000.0 and round_["within_limit"]
    assert round_["homes"] == 2 and round_["event"] == "peak"


def test_power_and_homes_are_coalesced_to_one_push_a_second_with_only_the_homes_that_changed(net, stream):
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    reader = Reader(stream[1])
    # A burst within one reactor turn: one push, on the next turn, of the latest figures.
    for watts in (1000.0, 1100.0, 1200.0):
        h1.say(wire.Measure(1.0, watts, ()))
    assert reader.data("power") == []
    net.clock.advance(0)
    others = sum(_counted(net, h) for h in ("h2", "h3", "h4"))
    assert [p["measured_w"] for p in reader.data("power")] == [1200.0 + others]
    assert [h["id"] for h in reader.data("homes")[-1]["homes"]] == ["h1"]
    pushed = len(reader.data("power"))
    net.clock.advance(0.5)
    assert len(reader.data("power")) == pushed  # not within the second
    h2.say(wire.Measure(2.0, 700.0, ()))
    net.clock.advance(0.5)
    assert len(reader.data("power")) == pushed + 1
    # Only h2: h1 has not changed since the last push.
    [(home_id, measured)] = [(h["id"], h["measured_w"]) for h in reader.data("homes")[-1]["homes"]]
    assert (home_id, measured) == ("h2", 700.0)
    # Quiet: nothing more is pushed.
    before = reader.text
    net.clock.advance(10)
    assert reader.text == before


def _counted(net, home_id):
    from jeisson.aggregator.watch import measured_or_counted_w

    return measured_or_counted_w(net.aggregator.homes[home_id], net.clock.seconds())


def test_a_heartbeat_comment_every_15_seconds_while_a_stream_is_open_and_no_timer_after(net, stream):
    reader = Reader(stream[1])
    net.clock.advance(push.HEARTBEAT_S - 0.1)
    assert b": heartbeat" not in reader.text
    net.clock.advance(0.1)
    assert reader.text.count(b": heartbeat\n\n") == 1
    net.clock.advance(push.HEARTBEAT_S)
    assert reader.text.count(b": heartbeat\n\n") == 2
    reader.close()
    resource, _ = stream
    assert resource.push.streams.clients == [] and not resource.push.watching
    assert resource.push.streams._heartbeat is None


def test_nothing_is_tracked_while_no_stream_is_open(net, stream):
    resource, site = stream
    h1 = net.home("h1", *H1_LOADS)
    h1.say(wire.Measure(1.0, 900.0, ()))
    assert resource.push.changes.dirty == {} and not resource.push.changes.moved
    assert not [c for c in net.clock.getDelayedCalls() if "Coalescer" in repr(c.func)]


def test_a_client_that_stops_reading_is_owed_the_state_not_sent_a_queue_of_it(net, stream):
    resource, site = stream
    slow, fast = Reader(site), Reader(site)
    slow_client, fast_client = resource.push.streams.clients
    net.clock.advance(0)  # the snapshots' pages
    # Its socket's buffer is full: Twisted pauses the channel, and the channel the client.
    slow.transport.producer.pauseProducing()
    assert slow_client.paused
    sent_before = len(slow.transport.value())
    h1 = net.home("h1", *H1_LOADS)
    for i in range(30):
        h1.say(wire.Measure(float(i), 1000.0 + i, ()))
        net.clock.advance(1)
    # Nothing written; queued, only what happened once (heartbeats, the
    # event binding at 20 s, its round): it is owed the power and h1, as they will be.
    assert len(slow.transport.value()) == sent_before
    assert {data.split(b"\n")[0] for data in slow_client.queue} == {b": heartbeat", b"event: events", b"event: round"}
    assert list(slow_client.owed) == ["h1"] and slow_client.owe_power
    assert len(fast.data("power")) >= 29 and not slow_client.gone


def test_a_client_that_stops_reading_is_cut_off_past_its_bound_and_the_others_go_on(net):
    resource = push.aggregator_stream(net.aggregator, net.clock)
    resource.push.streams.max_queued = 2000
    site = site_with(resource)
    slow, fast = Reader(site), Reader(site)
    slow_client, fast_client = resource.push.streams.clients
    slow.transport.producer.pauseProducing()
    # Events pushed one after the other: frames that queue for the paused client.
    for i in range(10):
        net.aggregator.add_event(f"gala-{i}", 3, "+100", "+150")
    # Cut off at once (abort: a close would wait for the buffer it does not read).
    assert slow_client.gone and slow.transport.disconnecting
    assert resource.push.streams.clients == [fast_client]
    assert len(fast.data("events")) == 10


def test_a_paused_client_catches_up_with_the_current_figures_when_resumed(net, stream):
    resource, site = stream
    reader = Reader(site)
    reader.transport.producer.pauseProducing()
    h1 = net.home("h1", *H1_LOADS)
    for i in range(3):
        h1.say(wire.Measure(float(i), 1000.0 + i, ()))
        net.clock.advance(1)
    net.run_until(FIRST_ROUND)  # the event binds: its frame queues
    assert reader.data("power") == [] and reader.data("events") == []
    reader.transport.producer.resumeProducing()
    assert len(reader.data("events")) == 1  # the queue at once
    net.clock.advance(0)  # then what it is owed, on the next turn
    others = sum(_counted(net, h) for h in ("h2", "h3", "h4"))
    assert [p["measured_w"] for p in reader.data("power")] == [1002.0 + others]
    assert [h["measured_w"] for h in reader.data("homes")[-1]["homes"]] == [1002.0]


def test_a_large_snapshot_comes_a_page_per_reactor_turn_and_a_push_carries_a_bounded_number_of_homes(
        net, stream, monkeypatch):
    monkeypatch.setattr(push, "PAGE", 3)
    stream[0].push.changes.per_push = 2
    homes = [net.home(h) for h in ("h1", "h2", "h3", "h4")]
    reader = Reader(stream[1])
    [snapshot] = reader.data("snapshot")
    assert [h["id"] for h in snapshot["homes"]] == ["h1", "h2", "h3"] and snapshot["homes_pending"] == 1
    net.clock.advance(0)
    assert [h["id"] for h in reader.data("homes")[0]["homes"]] == ["h4"]
    for i, home in enumerate(homes):
        home.say(wire.Measure(1.0, 100.0 * (i + 1), ()))
    net.clock.advance(0)
    assert [[h["id"] for h in push_["homes"]] for push_ in reader.data("homes")[1:]] == [["h1", "h2"]]
    net.clock.advance(1)
    assert [[h["id"] for h in push_["homes"]] for push_ in reader.data("homes")[1:]] == [["h1", "h2"], ["h3", "h4"]]


def test_each_frame_is_one_event_with_one_line_of_json():
    assert push.frame("power", {"a": "x\ny"}) == b'event: power\ndata: {"a":"x\\ny"}\n\n'


def test_the_home_streams_its_status_and_loads_and_each_switch_at_once():
    from tests.test_home_core import CONFIG as HOME_CONFIG

    rig = Rig(HOME_CONFIG)
    resource = push.home_stream(rig.home, rig.clock)
    reader = Reader(site_with(resource))
    [snapshot] = reader.data("snapshot")
    assert snapshot["status"]["id"] == rig.home.config.id
    assert [load["id"] for load in snapshot["loads"]] == sorted(rig.home.config.loads)
    actuator = sorted(rig.home.config.actuators)[0]
    count = rig.home.config.actuators[actuator]
    rig.board(actuator, "0" * count)
    rig.clock.advance(1)
    switches = reader.data("switch")
    loads = reader.data("loads")
    assert loads and all(load["board"] == actuator for load in loads[-1]["loads"])
    statuses = reader.data("status")
    assert statuses and {"id": actuator, "connected": True} in statuses[-1]["boards"]
    # The owner's loads switched on as the board came: each switch pushed.
    assert all(s["ok"] and s["on"] for s in switches)


# ------------------------------------------------------------ the pages


def get(site: Site, path: bytes, headers: bytes = b"") -> tuple[bytes, bytes]:
    """One GET on a fresh connection: the response's head and body."""
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50001))
    channel = site.buildProtocol(transport.getPeer())
    channel.callLater = IDLE.callLater
    channel.makeConnection(transport)
    channel.dataReceived(b"GET " + path + b" HTTP/1.0\r\nHost: localhost\r\n" + headers + b"\r\n")
    head, _, body = transport.value().partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("pages, page, files", [
    (dashboard.aggregator_pages, b"<title>jeisson \xc2\xb7 aggregator</title>",
     (b"dashboard.js", b"dashboard.css", b"common.js")),
    (dashboard.home_pages, b"<title>jeisson \xc2\xb7 my home</title>", (b"home.js", b"dashboard.css", b"common.js")),
])
def test_the_page_and_its_files_are_served_with_a_policy_of_self_only(pages, page, files):
    site = Site(pages())
    head, body = get(site, b"/")
    assert b"200 OK" in head and page in body
    assert b"Content-Type: text/html; charset=utf-8" in head
    assert b"Content-Security-Policy: default-src 'none'; script-src 'self'" in head
    assert b"X-Content-Type-Options: nosniff" in head
    assert b"Cache-Control: no-cache" in head
    for name in files:
        head, body = get(site, b"/static/" + name)
        assert b"200 OK" in head and body, name
        assert b"Content-Security-Policy" in head
    # Every script and style the page names is one it is served.
    for name in re.findall(rb'(?:src|href)="/static/([^"]+)"', get(site, b"/")[1]):
        assert name in files


def test_a_file_unchanged_is_not_sent_again_and_others_are_not_found():
    site = Site(dashboard.aggregator_pages())
    head, _ = get(site, b"/static/dashboard.js")
    etag = re.search(rb"ETag: (\S+)", head).group(1)
    head, body = get(site, b"/static/dashboard.js", b"If-None-Match: " + etag + b"\r\n")
    assert b"304" in head.split(b"\r\n")[0] and body == b""
    for path in (b"/static/../push.py", b"/static/push.py", b"/static/", b"/nothing", b"/static/home.js"):
        assert b"404" in get(site, path)[0].split(b"\r\n")[0], path


def test_the_pages_use_no_inline_script_or_style_and_nothing_from_another_site():
    for name in dashboard.AGGREGATOR_FILES + dashboard.HOME_FILES:
        text = dashboard.read(name).decode()
        assert "http://" not in text and "https://" not in text, name
        if name.endswith(".html"):
            assert "<script>" not in text and "style=" not in text and " on" + "click=" not in text, name


def test_dashboards_opened_together_share_their_snapshot_pages_until_a_home_in_one_changes_or_a_round_ends(
        net, stream, monkeypatch):
    monkeypatch.setattr(push, "PAGE", 2)
    agg_push = stream[0].push
    homes = {h: net.home(h) for h in ("h1", "h2", "h3", "h4")}
    first, second = Reader(stream[1]), Reader(stream[1])
    net.clock.advance(0)
    assert first.data("homes") == second.data("homes") == [{"homes": first.data("homes")[0]["homes"], "pending": 0}]
    assert [h["id"] for h in first.data("homes")[0]["homes"]] == ["h3", "h4"]
    # Built once: both pages' encodings kept, the same bytes handed out again.
    assert sorted(agg_push.shared) == [("h1", "h2"), ("h3", "h4")]
    assert agg_push.shared_page(["h3", "h4"]) is agg_push.shared_page(["h3", "h4"])
    # A home that changes drops its page: the next dashboard gets it as it is now.
    homes["h3"].say(wire.Measure(1.0, 700.0, ()))
    assert sorted(agg_push.shared) == [("h1", "h2")]
    third = Reader(stream[1])
    net.clock.advance(0)
    [page] = third.data("homes")
    assert [(h["id"], h["measured_w"]) for h in page["homes"]][0] == ("h3", 700.0)
    assert [h["measured_w"] for h in first.data("homes")[0]["homes"] if h["id"] == "h3"] != [700.0]
    # A round's end drops them all.
    net.run_until(FIRST_ROUND)
    for i, home in enumerate(homes.values()):
        home.commit(1, 100.0 * i)
    assert net.aggregator.last_round is not None and agg_push.shared == {} and agg_push.shared_of == {}
    for reader in (first, second, third):
        reader.close()


def test_the_events_pushed_are_the_apis_list():
    from jeisson.web.aggregator_api import event_views

    net = Net(CONFIG)
    resource = push.aggregator_stream(net.aggregator, net.clock)
    reader = Reader(site_with(resource))
    [snapshot] = reader.data("snapshot")
    assert snapshot["events"] == event_views(net.aggregator, resource.push.seen) and snapshot["events"]
    reader.close()
