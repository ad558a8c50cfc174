"""The aggregator's listener seam, its threaded planning, and a COMMIT for a
round that never was: homes on fake wires, time on a task.Clock."""

import json

import pytest
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs

from jeisson.aggregator.listeners import AggregatorListener
from jeisson.aggregator.report import StatusFileListener
from jeisson.status_file import StatusFileService
from jeisson.wire import aggregator_home as wire
from jeisson.wire.errors import ProtocolError
from tests.peers import Net
from tests.test_aggregator_core import CONFIG, END, FIRST_ROUND, H1_LOADS, H2_LOADS, TIMEOUT
from tests.test_aggregator_events import fired


class Recorder(AggregatorListener):
    """Every moment it hears, with the fields a test compares."""

    def __init__(self):
        self.moments: list[tuple] = []
        self.changes = 0

    def changed(self):
        self.changes += 1

    def event_offered(self, offer, outcome, source):
        self.moments.append(("event_offered", offer.event.id, outcome.verdict, source))

    def binding_event_changed(self, event, previous):
        self.moments.append(("binding", event and event.id, previous and previous.id))

    def home_joined(self, home_id, peer):
        self.moments.append(("joined", home_id))

    def home_left(self, home_id, counted_w):
        self.moments.append(("left", home_id, counted_w))

    def home_silent(self, home_id, round_number, counted_w):
        self.moments.append(("silent", home_id, round_number, counted_w))

    def home_answers_again(self, home_id):
        self.moments.append(("again", home_id))

    def bid_received(self, home_id, flex):
        self.moments.append(("bid", home_id, flex.bid))

    def commitment_received(self, home_id, commit):
        self.moments.append(("commit", home_id, commit.round, commit.committed_w))

    def measurement(self, home_id, measure):
        self.moments.append(("measure", home_id, measure.power_w))

    def round_started(self, round_number, event, homes):
        self.moments.append(("round_started", round_number, event.id, homes))

    def budgets_due(self, round_number, event, budgets):
        self.moments.append(("due", round_number, event.id, budgets))

    def budget_sent(self, home_id, budget):
        self.moments.append(("budget", home_id, budget.round, budget.budget_w))

    def home_released(self, home_id, release):
        self.moments.append(("released", home_id, release.round))

    def round_finished(self, summary):
        self.moments.append(("round_finished", summary.number, summary.committed_w, summary.within_limit))

    def round_abandoned(self, round_number, why):
        self.moments.append(("abandoned", round_number))

    def negotiation_settled(self, converged, rounds, elapsed_s):
        self.moments.append(("settled", converged, rounds))

    def named(self, *names):
        return [m for m in self.moments if m[0] in names]


@pytest.fixture
def recorded():
    net = Net(CONFIG)
    recorder = Recorder()
    net.aggregator.add_listener(recorder)
    return net, recorder


def test_a_listener_hears_a_round_from_the_homes_joining_to_the_release(recorded):
    net, recorder = recorded
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    h1.say(wire.Measure(1.0, 3000.0, ()))
    net.run_until(FIRST_ROUND)
    h1.commit(1, 3000, on=("oven",))
    h2.commit(1, 2000, on=("ev",))
    assert recorder.moments == [
        ("joined", "h1"), ("bid", "h1", 1), ("joined", "h2"), ("bid", "h2", 1), ("measure", "h1", 3000.0),
        ("binding", "peak", None),
        ("round_started", 1, "peak", 2),
        # h1 sheds first; h2's grant waits for its commitment, and, above
        # what h2 draws, is announced as due before it goes out.
        ("budget", "h1", 1, 3000.0), ("commit", "h1", 1, 3000.0),
        ("due", 1, "peak", {"h2": (2000.0, END)}), ("budget", "h2", 1, 2000.0), ("commit", "h2", 1, 2000.0),
        ("round_finished", 1, 5000.0, True),
        ("settled", True, 1),
    ]
    # Each moment also said "changed", once per listener.
    assert recorder.changes == len(recorder.moments)
    net.run_until(END)
    # Periodic rounds ran meanwhile; the RELEASE takes the next number.  The
    # binding event's end is announced once the homes are released.
    n = net.aggregator.rounds.number
    assert n > 2 and recorder.named("binding", "released")[-3:] == [
        ("released", "h1", n), ("released", "h2", n), ("binding", None, "peak")]


def test_a_listener_hears_homes_leave_go_silent_and_answer_again(recorded):
    net, recorder = recorded
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    net.run_until(FIRST_ROUND + TIMEOUT)  # h1 never commits its shed
    assert ("silent", "h1", 1, 4000.0) in recorder.moments
    h1.flex(*H1_LOADS)
    assert recorder.moments[-2:] == [("again", "h1"), ("bid", "h1", 2)]
    h2.leave()
    # The round waited for h2's commitment: it is over without it.  h2 never
    # acknowledged a budget, so it is counted at its 2000 W demand (it may
    # run its loads as its owner set them), and the round is honestly over
    # the limit.  (h1's new bid came during it: the negotiation goes on.)
    assert recorder.moments[-2:] == [("left", "h2", 2000.0), ("round_finished", 1, 0, False)]


def test_events_offered_are_heard_with_their_verdict_and_source(recorded):
    net, recorder = recorded
    assert fired(net.aggregator.add_event("gala", 3, "+100", "+150")) == "added"
    net.aggregator.add_event("gala", 3, "+100", "+150")
    net.aggregator.cancel_event("nothing")
    assert recorder.named("event_offered") == [
        ("event_offered", "gala", "added", "the manhole"), ("event_offered", "gala", "duplicate", "the manhole"),
        ("event_offered", "nothing", "refused", "the manhole")]


def test_a_listener_that_fails_is_logged_and_the_others_and_the_round_go_on(recorded):
    net, recorder = recorded

    class Broken(AggregatorListener):
        def budget_sent(self, home_id, budget):
            raise RuntimeError("disk full")

    net.aggregator.remove_listener(recorder)
    net.aggregator.add_listener(Broken())
    net.aggregator.add_listener(recorder)
    h1 = net.home("h1", *H1_LOADS, comply=0.1)
    with capturedLogs() as events:
        net.run_until(FIRST_ROUND + 1)
    failures = [e for e in events if "log_failure" in e]
    assert failures and all(e["log_failure"].check(RuntimeError) for e in failures)
    assert ("budget", "h1", 1, 4000.0) in recorder.moments
    assert net.summary.number == 1 and net.summary.within_limit
    assert h1.budgets()


def test_the_status_file_is_written_after_a_moment_and_not_again_until_the_next(tmp_path):
    net = Net(CONFIG)
    path = tmp_path / "status.json"
    service = StatusFileService(net.aggregator.snapshot, str(path), net.clock)
    net.aggregator.add_listener(StatusFileListener(service))
    service.startService()
    assert json.loads(path.read_text())["homes"]["h1"]["connected"] is False
    path.unlink()
    net.clock.advance(1)
    assert not path.exists(), "nothing changed: no write"
    net.home("h1", *H1_LOADS)
    net.clock.advance(0.5)
    assert json.loads(path.read_text())["homes"]["h1"]["connected"] is True
    service.stopService()


# ---------------------------------------------------------- planning in a thread


class HeldSolver:
    """Runs a plan when the test says, as a thread would finish it later."""

    def __init__(self):
        self.waiting: list[tuple] = []

    def __call__(self, plan):
        d = Deferred()
        self.waiting.append((plan, d))
        return d

    def finish(self):
        plan, d = self.waiting.pop(0)
        d.callback(plan())


def threaded_net(above=1):
    solver = HeldSolver()
    net = Net(CONFIG, solve_in_thread=solver, solve_in_thread_above=above)
    return net, solver


def test_a_large_round_is_planned_off_the_reactor_and_sent_when_the_plan_is_back():
    net, solver = threaded_net(above=1)
    h1 = net.home("h1", *H1_LOADS, comply=0.1)
    h2 = net.home("h2", *H2_LOADS, comply=0.1)
    net.run_until(FIRST_ROUND)
    assert len(solver.waiting) == 1 and net.aggregator.round.phase == "plan"
    assert h1.budgets() == [] and h2.budgets() == []
    solver.finish()
    net.run_until(FIRST_ROUND + 1)
    assert [b.budget_w for b in h1.budgets()] == [3000.0] and [b.budget_w for b in h2.budgets()] == [2000.0]
    assert net.summary.number == 1 and net.summary.within_limit


def test_a_round_at_or_below_the_size_is_planned_in_line():
    net, solver = threaded_net(above=2)
    h1 = net.home("h1", *H1_LOADS, comply=0.1)
    net.home("h2", *H2_LOADS, comply=0.1)
    net.run_until(FIRST_ROUND)
    assert solver.waiting == [] and h1.budgets()


def test_a_home_that_leaves_while_the_plan_is_solved_gets_no_budget_and_is_counted_cautiously():
    net, solver = threaded_net(above=1)
    h1 = net.home("h1", *H1_LOADS, comply=0.1)
    h2 = net.home("h2", *H2_LOADS, comply=0.1)
    net.run_until(FIRST_ROUND)
    h1.leave()
    solver.finish()
    net.run_until(FIRST_ROUND + 1)
    assert h1.budgets() == []
    # h1 is counted at its 4000 W: h2's ev (2000 W) does not fit beside it.
    summary = net.summary
    assert summary.unknown_w == 4000.0 and summary.within_limit
    assert h2.budgets()[0].round == 1 and h2.budgets()[0].budget_w == 1000.0


def test_a_plan_that_comes_back_after_another_event_binds_is_dropped():
    net, solver = threaded_net(above=1)
    h1 = net.home("h1", *H1_LOADS, comply=0.1)
    net.home("h2", *H2_LOADS, comply=0.1)
    net.run_until(FIRST_ROUND)
    net.aggregator.add_event("tighter", 2, "+0", "+100")
    net.clock.advance(0)  # the round under the new event starts
    stale = solver.waiting[0]
    solver.waiting.remove(stale)
    stale[1].callback(stale[0]())
    assert h1.budgets() == [], "no budget from a plan under the old limit"
    solver.finish()  # the round under the new event
    assert h1.budgets()[0].event == "tighter"


def test_a_commit_for_a_round_never_run_is_a_protocol_error_and_a_late_one_is_ignored(recorded):
    net, recorder = recorded
    net.home("h1", *H1_LOADS, comply=0.1)
    net.home("h2", *H2_LOADS, comply=0.1)
    net.run_until(FIRST_ROUND + 1)
    with pytest.raises(ProtocolError) as raised:
        net.aggregator.commit_received("h1", wire.Commit(7, 1, 3000.0, ("oven",)))
    assert raised.value.code == wire.STATE and "round 7" in raised.value.detail
    before = list(recorder.moments)
    net.aggregator.commit_received("h1", wire.Commit(0, 1, 3000.0, ("oven",)))
    assert recorder.moments == before



def test_a_plan_that_raises_leaves_no_round_behind_and_the_next_runs_on_the_period(monkeypatch):
    from jeisson.aggregator import negotiation

    net = Net(CONFIG)
    h1 = net.home("h1", *H1_LOADS, comply=0.1)

    def broken(*args):
        raise ValueError("solver exploded")

    monkeypatch.setattr(negotiation, "plan", broken)  # a fault injected: the next plan raises
    with capturedLogs() as events:
        net.run_until(FIRST_ROUND)
    assert any("planning failed" in e["log_format"] for e in events if "log_failure" in e)
    assert net.aggregator.round is None and h1.budgets() == []
    monkeypatch.undo()
    h1.flex(*H1_LOADS)  # a change does not wait: nothing holds the rounds
    net.run_until(FIRST_ROUND + 1)
    assert h1.budgets() and net.summary.within_limit


def test_a_commit_for_a_round_never_run_does_not_bring_a_silent_home_back(recorded):
    net, recorder = recorded
    net.home("h1", *H1_LOADS)
    net.home("h2", *H2_LOADS, comply=0.1)
    net.run_until(FIRST_ROUND + TIMEOUT)  # h1 never commits its shed
    assert net.aggregator.homes["h1"].unresponsive
    with pytest.raises(ProtocolError):
        net.aggregator.commit_received("h1", wire.Commit(99, 1, 3000.0, ("oven",)))
    assert net.aggregator.homes["h1"].unresponsive and ("again", "h1") not in recorder.moments


def test_a_negotiation_that_began_at_time_zero_is_held_after_converge_s():
    from jeisson.aggregator.rounds import CONVERGING, HELD, Negotiation

    negotiation = Negotiation()
    negotiation.round_starting(0.0)
    assert negotiation.round_done(5.0, True, 10.0) == CONVERGING
    assert negotiation.round_done(10.0, True, 10.0) == HELD
