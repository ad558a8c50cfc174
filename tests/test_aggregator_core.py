"""The aggregator end to end in memory: homes on fake wires, rounds on a task.Clock.

Every home here is a ``FakeHome`` (tests/peers.py), the fake wire of a real
``HomeSession``; the tests read
what each home was sent (BUDGET, RELEASE, ...) and when, the aggregator's
log events, its ``RoundSummary`` and its ``snapshot()``.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import capturedLogs, formatEvent

from jeisson.aggregator.round import DISPATCH_BATCH
from jeisson.aggregator.rounds import ROUND_DEBOUNCE_S
from jeisson.wire import aggregator_home as wire
from tests.peers import Net, load

START, END, LIMIT_W = 20.0, 200.0, 5000.0
PERIOD, TIMEOUT = 30.0, 5.0
FIRST_ROUND = START  # an event boundary starts its round at once
SLACK_W = 1e-6

CONFIG = f"""
[aggregator]
listen = tcp:7700:interface=127.0.0.1
; long enough that no PING gets in the way of these tests
heartbeat_s = 600
round_period_s = {PERIOD:g}
round_timeout_s = {TIMEOUT:g}
; Homes a test leaves out are known to draw nothing (max_kw = 0): with the
; default, each would count as 10 kW until heard from (see the tests of
; honest accounting below).
[home:h1]
secret = s1
max_kw = 0
[home:h2]
secret = s2
max_kw = 0
[home:h3]
secret = s3
max_kw = 0
[home:h4]
secret = s4
max_kw = 0
[event:peak]
limit_kw = {LIMIT_W / 1000:g}
start = +{START:g}
end = +{END:g}
"""


@pytest.fixture
def net():
    return Net(CONFIG)


def approx_budget(message, round_number, watts):
    assert isinstance(message, wire.Budget)
    assert (message.round, message.event, message.end) == (round_number, "peak", END)
    assert message.budget_w == pytest.approx(watts, abs=SLACK_W)


# h1 draws 4000 W and the round keeps 3000 of it; h2 draws nothing and wants 2000.
H1_LOADS = (load("oven", 3000, priority=10, on=True), load("dryer", 1000, priority=1, on=True))
H2_LOADS = (load("ev", 2000, priority=5, on=False),)


@pytest.fixture
def two(net):
    return net, net.home("h1", *H1_LOADS), net.home("h2", *H2_LOADS)


# ---------------------------------------------------------------- the rounds


def test_no_round_before_the_event(two):
    net, h1, h2 = two
    net.run_until(START - 0.01)
    assert h1.take() == [] and h2.take() == []
    assert net.aggregator.snapshot()["event"] is None


def test_shedding_homes_get_their_budget_first_the_others_after_they_commit(two):
    net, h1, h2 = two
    net.run_until(FIRST_ROUND - 0.01)
    assert h1.take() == [] and h2.take() == [], "no round before the event"
    net.run_until(FIRST_ROUND)
    [shed] = h1.take()
    approx_budget(shed, 1, 3000)
    net.run_until(FIRST_ROUND + TIMEOUT - 0.5)
    assert h2.take() == [], "h2 may not rise before h1 has shed"
    h1.commit(1, 3000, on=("oven",))
    [grant] = h2.take()
    approx_budget(grant, 1, 2000)
    assert grant.budget_w <= LIMIT_W - 3000 + SLACK_W, "fits the limit minus the committed levels"
    assert net.summary is None, "the round waits for h2 too"
    h2.commit(1, 2000, on=("ev",))
    summary = net.summary
    assert (summary.number, summary.event, summary.limit_w) == (1, "peak", LIMIT_W)
    assert summary.committed_w == pytest.approx(5000) and summary.unknown_w == 0
    assert summary.feasible and summary.within_limit
    assert summary.homes["h1"] == {
        "demand_w": 4000.0, "budget_w": pytest.approx(3000), "committed_w": 3000.0, "on": ["oven"], "off": ["dryer"]
    }
    assert summary.homes["h2"]["committed_w"] == 2000.0 and summary.homes["h2"]["on"] == ["ev"]


def test_a_round_reports_how_long_it_took_from_its_start_to_its_last_commitment(two):
    net, h1, h2 = two
    with capturedLogs() as events:
        net.run_until(FIRST_ROUND)
        net.run_until(FIRST_ROUND + 0.25)
        h1.commit(1, 3000, on=("oven",))
        net.run_until(FIRST_ROUND + 0.75)
        h2.commit(1, 2000, on=("ev",))
    summary = net.summary
    assert (summary.started, summary.finished) == (FIRST_ROUND, FIRST_ROUND + 0.75)
    [total] = [e for e in events if "ms" in e and e.get("n") == 1]
    assert total["ms"] == pytest.approx(750) and total["verdict"] == "within limit"
    assert "(round took 750.0 ms)" in formatEvent(total)
    last = net.aggregator.snapshot()["last_round"]
    assert (last["started"], last["finished"]) == (wire.format_utc(FIRST_ROUND), wire.format_utc(FIRST_ROUND + 0.75))


def _many_homes(count: int) -> tuple[Net, list]:
    """``count`` homes of one 100 W load each, on; the event's limit sheds half."""
    text = CONFIG.split("[home:h1]")[0] + "".join(f"[home:h{i}]\nsecret = s{i}\nmax_kw = 0\n"
                                                  for i in range(1, count + 1))
    text += f"[event:peak]\nlimit_kw = {count * 0.05:g}\nstart = +{START:g}\nend = +{END:g}\n"
    net = Net(text)
    return net, [net.home(f"h{i}", load(f"l{i}", 100, on=True)) for i in range(1, count + 1)]


def _turns(net: Net, then=None) -> list:
    """A turn counter from the event's start: calls due at the same moment
    run in the order they were scheduled, so each ``callLater(0)`` of the
    chain marks the next reactor turn.  ``then(turn)`` runs at each."""
    turn = [0]

    def tick():
        turn[0] += 1
        if then is not None:
            then(turn[0])
        if turn[0] < 10:
            net.clock.callLater(0, tick)

    net.run_until(START - 1)
    net.clock.callLater(1, tick)
    return turn


def _pending(net: Net, name: str) -> list:
    return [call for call in net.clock.getDelayedCalls() if call.func.__name__ == name]


def test_a_round_writes_its_budgets_a_batch_per_reactor_turn():
    homes = 2 * DISPATCH_BATCH + 50
    net, fleet = _many_homes(homes)
    timeouts = {}
    turn = _turns(net, lambda n: timeouts.update({n: len(_pending(net, "_phase_timeout"))}))
    budgets_in_turn = {}
    for home in fleet:
        home.send_line = lambda data, home=home, inner=home.send_line: (
            budgets_in_turn.update({turn[0]: budgets_in_turn.get(turn[0], 0) + 1}), inner(data))
    net.run_until(START)
    # Every home sheds in one phase; its budgets leave over three turns.
    assert list(budgets_in_turn.values()) == [DISPATCH_BATCH, DISPATCH_BATCH, 50]
    assert sorted(budgets_in_turn) == [1, 2, 3]
    assert all(len(home.budgets()) == 1 for home in fleet)
    # The phase's timeout starts once the last budget is out: every home
    # has all of round_timeout_s from its own budget.
    assert timeouts[2] == timeouts[3] == 0 and timeouts[4] == 1
    [timeout] = _pending(net, "_phase_timeout")
    assert timeout.getTime() == START + TIMEOUT
    for home in fleet:
        home.commit(1, home.budgets()[0].budget_w)
    assert net.summary.within_limit and net.summary.committed_w == pytest.approx(homes * 50)


def test_a_round_abandoned_between_batches_writes_no_more_budgets():
    net, fleet = _many_homes(DISPATCH_BATCH + 10)
    pending = []

    def between(turn):
        if turn == 2:  # after the first batch, before the second
            pending.extend(_pending(net, "_send_batch"))
            net.aggregator.cancel_event("peak")

    _turns(net, between)
    net.run_until(START)
    assert [len(home.budgets()) for home in fleet] == [1] * DISPATCH_BATCH + [0] * 10
    assert len(pending) == 1 and pending[0].cancelled
    assert _pending(net, "_send_batch") == [] and _pending(net, "_phase_timeout") == []


def test_a_home_kept_at_its_draw_gets_its_budget_with_the_shedding_homes(net):
    h1 = net.home("h1", *H1_LOADS)
    h3 = net.home("h3", load("fridge", 1500, priority=9, on=True))
    net.run_until(FIRST_ROUND)
    approx_budget(h1.take()[0], 1, 3000)
    # h3 keeps all it draws: it cannot rise above it, so it need not wait for h1.
    [hold] = h3.take()
    approx_budget(hold, 1, 1500)
    h3.commit(1, 1500)
    assert net.summary is None, "the round waits for h1"
    h1.commit(1, 3000, on=("oven",))
    assert net.summary.committed_w == pytest.approx(4500) and net.summary.within_limit
    assert h3.take() == [], "nothing is left to grant h3"


def test_with_nobody_to_shed_every_home_is_answered_at_once(net):
    h1 = net.home("h1", load("oven", 3000, on=True))
    h2 = net.home("h2", load("ev", 1000, on=False))
    net.run_until(FIRST_ROUND)
    # h1 keeps its 3000 W, h2 rises: no shed to wait for, so neither waits.
    approx_budget(h1.take()[0], 1, 3000)
    approx_budget(h2.take()[0], 1, 1000)


def test_a_commit_for_another_round_is_ignored(two):
    net, h1, h2 = two
    net.run_until(FIRST_ROUND)
    h1.commit(0, 100)
    h2.commit(1, 2000)  # h2 has no budget in this round yet
    assert net.aggregator.snapshot()["homes"]["h1"]["level_w"] == 4000.0
    assert h2.budgets() == []
    h1.commit(1, 3000)
    h2.commit(1, 2000)
    assert net.summary.number == 1
    # Round 2: both keep their level; a late word about round 1 changes nothing.
    net.run_until(net.clock.seconds() + PERIOD)
    assert [b.round for b in h1.budgets()] == [1, 2]
    h1.commit(1, 50)
    assert net.aggregator.snapshot()["homes"]["h1"]["level_w"] == 3000.0
    h1.commit(2, 3000)
    h2.commit(2, 2000)
    assert net.summary.number == 2 and net.summary.within_limit


def test_a_home_that_does_not_commit_is_logged_counted_and_the_round_finishes(two):
    net, h1, h2 = two
    net.run_until(FIRST_ROUND)
    approx_budget(h1.take()[0], 1, 3000)
    net.run_until(FIRST_ROUND + TIMEOUT - 0.01)
    assert h2.take() == []
    with capturedLogs() as events:
        net.run_until(FIRST_ROUND + TIMEOUT)
    late = [e for e in events if e["log_level"].name == "warn"]
    assert [(e["home"], e["n"]) for e in late] == [("h1", 1)]
    # h1 still draws its 4000 W as far as anyone knows: h2 gets only what is left.
    [grant] = h2.take()
    approx_budget(grant, 1, LIMIT_W - 4000)
    h2.commit(1, grant.budget_w)
    summary = net.summary
    assert summary.homes["h1"]["committed_w"] is None
    assert summary.unknown_w == pytest.approx(4000), "counted at the larger of its level and its budget"
    assert summary.committed_w + summary.unknown_w == pytest.approx(LIMIT_W)
    assert summary.within_limit


def test_a_round_nobody_answers_still_finishes(two):
    net, h1, h2 = two
    net.run_until(FIRST_ROUND + 2 * TIMEOUT)
    assert net.summary.number == 1
    assert net.summary.committed_w == 0
    # h1 at the 4000 W it draws; h2 never acknowledged its 1000 W grant (nor
    # any budget): it may run its ev as its owner set it, so at its demand.
    [grant] = h2.budgets()
    approx_budget(grant, 1, LIMIT_W - 4000)
    assert net.summary.unknown_w == pytest.approx(4000 + 2000)
    assert not net.summary.within_limit


def test_a_home_that_does_not_commit_is_counted_at_the_budget_it_acknowledged_last(two):
    net, h1, h2 = two
    net.run_until(FIRST_ROUND)
    h1.commit(1, 3000, on=("oven",))
    h2.commit(1, 2000, on=("ev",))
    assert net.summary.within_limit
    h1.take(), h2.take()
    # h2's owner switches its ev off, and h1 wants its dryer more: round 2
    # gives h1 the room, but h2 never commits to it.  It may never have got
    # round 2's budget and still hold round 1's 2000 W (the ev could go on
    # again): it is counted so, not at what it last reported (0 W).
    h2.flex(load("ev", 2000, priority=5, on=False, wanted=False))
    h1.flex(load("oven", 3000, priority=10, on=True), load("dryer", 1000, priority=9, on=False))
    net.run_until(net.clock.seconds() + ROUND_DEBOUNCE_S)
    [b2] = h2.budgets()
    assert b2.round == 2 and b2.budget_w < 2000
    h1.commit(2, h1.budgets()[-1].budget_w)
    with capturedLogs() as events:
        net.run_until(net.clock.seconds() + TIMEOUT)
    assert ["round 2: home h2 did not commit within 5.0 s; counted at 2000 W"] == [
        formatEvent(e) for e in events if e["log_level"].name == "warn"]
    assert net.summary.number == 2 and net.summary.unknown_w == pytest.approx(2000)


def test_a_disconnected_home_is_counted_at_its_last_known_power(net):
    h1 = net.home("h1", *H1_LOADS, comply=0.1)
    h2 = net.home("h2", *H2_LOADS, comply=0.1)
    h3 = net.home("h3", load("sauna", 1500, priority=100, on=True))
    h3.leave()
    assert net.aggregator.snapshot()["homes"]["h3"]["connected"] is False
    net.run_until(FIRST_ROUND + 1)
    summary = net.summary
    assert summary.unknown_w == 1500.0
    assert "h3" not in summary.homes
    # 3500 W left: the oven; neither the ev nor the dryer fits the 500 W after it.
    [b1], [b2] = h1.budgets(), h2.budgets()
    approx_budget(b1, 1, 3000)
    approx_budget(b2, 1, 0)
    assert b1.budget_w + b2.budget_w + summary.unknown_w <= LIMIT_W + SLACK_W
    assert summary.within_limit


def test_an_away_home_is_counted_at_its_measured_power_when_higher(net):
    h1 = net.home("h1", *H1_LOADS, comply=0.1)
    h3 = net.home("h3", load("sauna", 1500, on=True))
    h3.say(wire.Measure(1.0, 1800.0, (("sauna", 1800.0),)))
    h3.leave()
    net.run_until(FIRST_ROUND + 1)
    assert net.summary.unknown_w == 1800.0
    # 3200 W left: the oven, whole; the dryer does not fit beside it.
    approx_budget(h1.budgets()[0], 1, 3000)


def test_a_home_leaving_mid_round_does_not_stall_it(two):
    net, h1, h2 = two
    net.run_until(FIRST_ROUND)
    h1.leave()
    # No wait for the timeout: h2 is granted what h1's last level leaves.
    [grant] = h2.budgets()
    approx_budget(grant, 1, LIMIT_W - 4000)
    h2.commit(1, grant.budget_w)
    assert net.summary.number == 1
    assert net.summary.unknown_w == pytest.approx(4000)
    assert net.summary.within_limit


def test_rounds_repeat_every_period_until_the_event_ends(net):
    h1 = net.home("h1", *H1_LOADS, comply=0.1)
    h2 = net.home("h2", *H2_LOADS, comply=0.1)
    net.run_until(END - 0.01)
    starts, commits = {}, {}
    for home in (h1, h2):
        for moment, message in home.received:
            if isinstance(message, wire.Budget):
                starts[message.round] = min(starts.get(message.round, moment), moment)
                commits[message.round] = max(commits.get(message.round, 0), moment + 0.1)
    rounds = sorted(starts)
    assert rounds == list(range(1, len(rounds) + 1)) and len(rounds) >= 5
    assert starts[1] == pytest.approx(FIRST_ROUND)
    for n in rounds[1:]:
        assert starts[n] - commits[n - 1] == pytest.approx(PERIOD), f"round {n}"
    # The homes complied: every round within the limit, and later rounds keep the first's budgets.
    assert net.summary.within_limit and net.summary.number == rounds[-1]
    for n in rounds[1:]:
        assert [b.budget_w for b in h1.budgets() if b.round == n] == [pytest.approx(3000)]
        assert [b.budget_w for b in h2.budgets() if b.round == n] == [pytest.approx(2000)]


def test_a_flex_during_a_round_triggers_the_next_one_soon(two):
    net, h1, h2 = two
    net.run_until(FIRST_ROUND)
    h2.flex(*H2_LOADS, load("kettle", 2000, priority=50))
    h1.commit(1, 3000)
    h2.commit(1, h2.budgets()[0].budget_w)
    finished = net.clock.seconds()
    net.run_until(finished + ROUND_DEBOUNCE_S)
    assert [b.round for b in h2.budgets()] == [1, 2]


def test_the_event_end_releases_every_home_in_it(net):
    h1 = net.home("h1", *H1_LOADS, comply=0.1)
    h2 = net.home("h2", *H2_LOADS, comply=0.1)
    h3 = net.home("h3")  # connected, but never reported: not in the event
    net.run_until(END - 0.01)
    last = net.summary.number
    h1.take(), h2.take()
    with capturedLogs() as events:
        net.run_until(END)
    assert h1.take() == [wire.Release(last + 1, "peak")]
    assert h2.take() == [wire.Release(last + 1, "peak")]
    assert h3.take() == []
    assert any("released" in e["log_format"] and e["homes"] == "h1, h2" for e in events)
    # Answering the RELEASE updates what the home is known to draw.
    h1.commit(last + 1, 4000, on=("oven", "dryer"))
    snapshot = net.aggregator.snapshot()
    assert snapshot["homes"]["h1"]["level_w"] == 4000.0
    assert snapshot["homes"]["h1"]["budget_w"] is None
    assert snapshot["event"] is None
    # No more rounds once the event is over.
    h2.flex(*H2_LOADS)
    net.run_until(END + 10 * PERIOD)
    assert [m for m in h1.take() + h2.take() if not isinstance(m, wire.Ack)] == []
    assert net.summary.number == last


def test_a_round_in_progress_at_the_end_is_abandoned_for_the_release():
    text = CONFIG.replace(f"end = +{END:g}", f"end = +{FIRST_ROUND + 1:g}")
    net = Net(text)
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    net.run_until(FIRST_ROUND + 1)
    assert h2.take() == [], "h2 was never budgeted in this event: nothing to release"
    shed, release = h1.take()
    assert (shed.round, shed.budget_w) == (1, pytest.approx(3000))
    assert release == wire.Release(2, "peak")
    h1.commit(1, 3000)  # too late for the abandoned round
    assert net.aggregator.snapshot()["homes"]["h1"]["level_w"] == 4000.0
    assert net.summary is None


def test_must_run_loads_above_the_limit_make_an_infeasible_round(net):
    h1 = net.home("h1", load("furnace", 4000, mode="must", on=True), load("tv", 300, on=True))
    h2 = net.home("h2", load("pump", 2000, mode="must", on=False))
    with capturedLogs() as events:
        net.run_until(FIRST_ROUND)
        # h1 sheds its tv; h2 is granted its must-run pump whatever the
        # headroom (appliance protection first), and the round says so.
        [shed] = h1.budgets()
        approx_budget(shed, 1, 4000)
        h1.commit(1, 4000, on=("furnace",))
        [grant] = h2.budgets()
        approx_budget(grant, 1, 2000)
        h2.commit(1, 2000, on=("pump",))  # the pump cannot be shed
    summary = net.summary
    assert summary.feasible is False
    assert summary.committed_w == 6000 and not summary.within_limit
    warned = [e for e in events if e["log_level"].name == "warn"]
    assert any("must-run" in e["log_format"] and e["limit"] == LIMIT_W for e in warned)
    assert not any(e.get("home") == "h2" and e.get("c") == 2000 for e in warned), "h2 kept to its budget"
    assert any(e.get("verdict") == "OVER LIMIT" for e in events)


# ---------------------------------------------------------- the safety rule


homes_st = st.lists(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=5000),  # rated W
            st.integers(min_value=1, max_value=100),  # priority
            st.sampled_from(["must", "may", "may", "off"]),
            st.booleans(),  # on
        ),
        max_size=4,
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(homes_st, st.integers(min_value=0, max_value=4), st.integers(min_value=0, max_value=20000))
def test_budgets_sent_plus_unknown_never_exceed_the_limit(homes, away, limit_w):
    """For homes that commit exactly their budget, whatever they report."""
    net = Net(CONFIG.replace(f"limit_kw = {LIMIT_W / 1000:g}", f"limit_kw = {limit_w / 1000}"))
    members = []
    for i, offers in enumerate(homes):
        loads = tuple(load(f"l{j}", w, p, mode, on) for j, (w, p, mode, on) in enumerate(offers))
        home = net.home(f"h{i + 1}", *loads, comply=0.1)
        if i < away:
            home.leave()
        else:
            members.append(home)
    net.run_until(FIRST_ROUND + 2 * TIMEOUT)
    summary = net.summary
    assert summary.number == 1
    sent = sum(b.budget_w for home in members for b in home.budgets())
    assert all(len(home.budgets()) <= 1 for home in members), "one budget per home per round"
    assert summary.committed_w == pytest.approx(sent, abs=SLACK_W)
    assert summary.within_limit == (sent + summary.unknown_w <= limit_w + SLACK_W)
    if summary.feasible:
        # Only must-run loads that no budget can shed may take a round over the limit.
        assert summary.within_limit


# ------------------------------------------------------------------ snapshot


def test_snapshot_is_json_and_shows_homes_event_and_last_round(two):
    net, h1, h2 = two
    before = json.loads(json.dumps(net.aggregator.snapshot()))
    assert before["event"] is None and before["last_round"] is None and before["rounds_run"] == 0
    assert before["homes"]["h3"] == {
        "connected": False, "peer": None, "feeder": None, "demand_w": None, "opted_out": False, "level_w": None,
        "measured_w": None, "budget_w": None, "loads": [],
    }
    net.run_until(FIRST_ROUND)
    h1.commit(1, 3000, on=("oven",))
    h2.commit(1, 2000, on=("ev",))
    snapshot = net.aggregator.snapshot()
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert snapshot["at"] == wire.format_utc(FIRST_ROUND)
    assert snapshot["event"] == {
        "id": "peak", "limit_w": LIMIT_W, "start": wire.format_utc(START), "end": wire.format_utc(END)
    }
    assert snapshot["rounds_run"] == 1
    last = snapshot["last_round"]
    assert (last["number"], last["event"], last["within_limit"], last["feasible"]) == (1, "peak", True, True)
    assert last["committed_w"] == pytest.approx(5000) and last["unknown_w"] == 0
    assert set(last["homes"]) == {"h1", "h2"}
    h1_status = snapshot["homes"]["h1"]
    assert h1_status["connected"] and h1_status["peer"] == h1.peer
    assert h1_status["level_w"] == 3000.0 and h1_status["budget_w"] == pytest.approx(3000)
    assert h1_status["demand_w"] == 4000.0
    assert [load["id"] for load in h1_status["loads"]] == ["oven", "dryer"]


def test_stop_leaves_no_timer_of_the_aggregator_running(two):
    net, h1, h2 = two
    net.run_until(FIRST_ROUND)
    for home in (h1, h2):
        home.leave()
    net.aggregator.stop()
    assert net.clock.getDelayedCalls() == []


# ------------------------------------------------- events that change the limit


def test_a_tighter_event_starting_mid_round_stops_that_round_from_granting():
    # "wide" (5 kW) binds first; "tight" (2 kW) starts while round 1 waits
    # for h1 to shed: h2 must not be granted under the old 5 kW.
    tight_start = FIRST_ROUND + 1
    text = CONFIG + f"[event:tight]\nlimit_kw = 2\nstart = +{tight_start:g}\nend = +{END:g}\n"
    net = Net(text)
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    net.run_until(FIRST_ROUND)
    (shed,) = h1.take()
    assert shed.event == "peak" and shed.round == 1
    net.run_until(tight_start)
    h1.commit(1, 3000)
    net.run_until(tight_start + 1)
    granted = [b for b in h2.budgets() if b.round == 1]
    assert granted == [], "round 1 went on granting under the old limit"
    # The next round plans under the tight limit.
    tight_rounds = [b for b in h1.budgets() + h2.budgets() if b.event == "tight"]
    assert tight_rounds and sum(b.budget_w for b in tight_rounds if b.round == tight_rounds[0].round) <= 2000 + SLACK_W


def test_a_budget_holds_until_the_end_of_the_chain_of_events():
    # "peak" ends at END; "later" starts before that and ends later: a home
    # that loses the aggregator keeps its budget through both.
    text = CONFIG + f"[event:later]\nlimit_kw = 6\nstart = +{END - 10:g}\nend = +{END + 100:g}\n"
    net = Net(text)
    h1 = net.home("h1", *H1_LOADS)
    net.home("h2", *H2_LOADS)
    net.run_until(FIRST_ROUND)
    (shed,) = h1.take()
    assert shed.end == END + 100


# ------------------------------------------------------------------ feeders

FEEDERS = CONFIG + """
[feeder:street-a]
limit_kw = 3.5
homes = h1, h3
"""


def test_a_feeder_limit_binds_beside_the_total(net):
    net = Net(FEEDERS)
    # The total (5 kW) would keep both of h1's loads; street-a's 3.5 kW cannot.
    h1 = net.home("h1", load("oven", 2000, priority=10, on=True), load("dryer", 2000, priority=9, on=True))
    h2 = net.home("h2", load("ev", 1000, priority=1))
    net.run_until(FIRST_ROUND)
    [shed] = h1.take()
    approx_budget(shed, 1, 2000)
    h1.commit(1, 2000, on=("oven",))
    [grant] = h2.take()
    approx_budget(grant, 1, 1000)
    h2.commit(1, 1000, on=("ev",))
    summary = net.summary
    assert {k: summary.feeders["street-a"][k] for k in ("limit_w", "committed_w", "unknown_w")} == \
        {"limit_w": 3500.0, "committed_w": 2000.0, "unknown_w": 0.0}
    assert summary.within_limit
    assert net.aggregator.snapshot()["homes"]["h1"]["feeder"] == "street-a"


def test_an_away_home_counts_against_its_feeder_and_a_grant_against_the_feeder_headroom():
    net = Net(FEEDERS)
    h3 = net.home("h3", load("sauna", 2500, on=True))
    h3.leave()
    h1 = net.home("h1", load("heater", 1000, priority=10), comply=0.1)
    h2 = net.home("h2", load("ev", 1500, priority=1), comply=0.1)
    net.run_until(FIRST_ROUND + 1)
    # street-a has 1000 W left beside the absent sauna; the total 2500 W.
    approx_budget(h1.budgets()[0], 1, 1000)
    approx_budget(h2.budgets()[0], 1, 1500)
    summary = net.summary
    assert {k: summary.feeders["street-a"][k] for k in ("limit_w", "committed_w", "unknown_w")} == \
        {"limit_w": 3500.0, "committed_w": 1000.0, "unknown_w": 2500.0}
    assert summary.within_limit


def test_a_summary_over_a_feeder_limit_is_not_within_limit():
    net = Net(FEEDERS)
    # A must-run load over its feeder's limit: only must loads there, and the round says so.
    h1 = net.home("h1", load("furnace", 4000, mode="must", on=True), comply=0.1)
    with capturedLogs() as events:
        net.run_until(FIRST_ROUND + 1)
    assert not net.summary.feasible and not net.summary.within_limit
    assert any("OVER LIMIT" in (e.get("verdict") or "") and e.get("feeder") == "street-a" for e in events)
    approx_budget(h1.budgets()[0], 1, 4000)


# ---------------------------------------------------------- convergence


def test_rounds_follow_while_bids_change_and_the_negotiation_converges(two):
    net, h1, h2 = two
    net.run_until(FIRST_ROUND)
    h1.take()
    # h1 sheds its dryer and reports the change before committing, as a home does.
    h1.flex(load("oven", 3000, priority=10, on=True), load("dryer", 1000, priority=1, mode="off"))
    h1.commit(1, 3000, on=("oven",))
    h2.commit(1, 2000, on=("ev",))
    assert net.summary.number == 1
    # A new bid came during round 1: round 2 follows at once, not on the period.
    net.run_until(net.clock.seconds() + ROUND_DEBOUNCE_S)
    assert [b.round for b in h1.budgets()] == [2]
    with capturedLogs() as events:
        h1.commit(2, 3000, on=("oven",))
        h2.commit(2, 2000, on=("ev",))
    assert any("converged" in e["log_format"] and e["rounds"] == 2 for e in events)
    assert net.aggregator.converged_rounds == 2
    # Converged: the next round comes on the period.
    net.run_until(net.clock.seconds() + PERIOD - 0.01)
    assert [b.round for b in h1.budgets()] == [2]


def test_a_negotiation_that_keeps_changing_stops_at_its_deadline():
    net = Net(CONFIG.replace("round_timeout_s", "converge_s = 2\nround_timeout_s"))
    h1 = net.home("h1", load("oven", 3000, priority=10, on=True), load("dryer", 1000, priority=1, on=True))
    net.run_until(FIRST_ROUND)
    with capturedLogs() as events:
        for n in range(1, 30):
            if net.aggregator.round is None:
                break
            h1.flex(load("oven", 3000, priority=10, on=n % 2 == 0), load("dryer", 1000, priority=1, on=True))
            h1.commit(n, 3000)
            net.run_until(net.clock.seconds() + 0.5)
    warned = [e for e in events if "did not converge" in e["log_format"]]
    assert len(warned) == 1
    rounds = warned[0]["rounds"]
    assert 3 <= rounds <= 6
    # Held: further bids do not bring the next round forward.
    h1.flex(load("oven", 3000, priority=10, on=True), load("dryer", 1000, priority=1, on=False))
    net.run_until(net.clock.seconds() + PERIOD - 1)
    assert net.aggregator.round is None and net.summary.number == rounds


# ------------------------------------------------------------------ opt-out


def test_an_opted_out_home_is_counted_as_fixed_demand(net):
    h1 = net.home("h1", *H1_LOADS, comply=0.1)
    h2 = net.home("h2", comply=0.1)
    with capturedLogs() as events:
        h2.bid += 1
        h2.loads = (load("sauna", 3000, priority=1, on=True), load("lamp", 100, priority=1, wanted=False))
        h2.say(wire.Flex(h2.bid, h2.loads, opt_out=True))
    assert any("opted out" in e["log_format"] and e["w"] == 3000 for e in events)
    assert net.aggregator.snapshot()["homes"]["h2"]["opted_out"] is True
    net.run_until(FIRST_ROUND + 1)
    # The sauna's 3000 W are fixed: of h1's loads only the dryer fits beside them.
    approx_budget(h2.budgets()[0], 1, 3000)
    approx_budget(h1.budgets()[0], 1, 1000)
    assert net.summary.within_limit


# ------------------------------------------------------------ non-responders


def test_a_home_silent_in_a_round_is_planned_as_fixed_until_heard_again(two):
    net, h1, h2 = two
    net.run_until(FIRST_ROUND + TIMEOUT)  # h1 never commits its shed to 3000 W
    [grant] = h2.budgets()
    approx_budget(grant, 1, 1000)  # what the limit leaves beside h1's 4000 W
    h2.commit(1, 0, on=())
    assert net.summary.number == 1 and net.aggregator.homes["h1"].unresponsive
    h2.take()
    # Round 2 follows at once: h1 is fixed at its 4000 W, so h2 gets only what is left.
    net.run_until(net.clock.seconds() + ROUND_DEBOUNCE_S)
    assert [b.round for b in h1.budgets()] == [1], "no budget for a home that does not answer"
    [again] = h2.budgets()
    approx_budget(again, 2, 0)  # the ev's 2000 W do not fit the 1000 W beside h1
    h2.commit(2, 0, on=())
    assert "h1" not in net.summary.homes and net.summary.unknown_w == 4000
    assert net.summary.within_limit
    # h1 wakes up and bids: it takes part again.
    with capturedLogs() as events:
        h1.flex(load("oven", 3000, priority=10, on=True), load("dryer", 1000, priority=1, mode="off"))
    assert not net.aggregator.homes["h1"].unresponsive
    assert any("answers again" in e["log_format"] for e in events)
