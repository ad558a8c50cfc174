"""Safety invariants of the whole system, under every order of events Hypothesis finds.

A ``RuleBasedStateMachine`` drives an aggregator, three homes and their
boards (``jeisson.simulation``: the real cores and sessions over in-memory
links, on a simulated clock) through time passing, lines delivered out of
order across links or twice, homes that stop answering, links cut and
restored, home restarts, owners switching loads and opting out, two
overlapping events with a feeder, and an operator adding, changing and
cancelling a third event while it all runs.  After every step it checks:

- every round whose plan was feasible, and in which every home committed,
  none above its budget (constraints can force that, and the round logs
  it), ends with commitments plus unknown power within the total limit and
  every feeder's;
- a home never draws more than its budget unless the loads it must run
  (critical, held by a minimum time, due back after a maximum off time,
  or unknown) alone exceed it;
- no relay switches against its load's minimum on or off time;
- no critical load is ever switched off while its owner wants it on.

CI runs a modest number of examples; ``bench/safety_machine.py`` runs the
same machine for a hundred thousand steps and more.
"""

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from jeisson.simulation import SimLoad, Simulation, home_inis

SLACK_W = 1e-6
HOMES = ("h1", "h2", "h3")

AGGREGATOR = """
[aggregator]
listen = tcp:0
heartbeat_s = 5
round_period_s = 20
round_timeout_s = 4
converge_s = 10
[home:h1]
secret = s-h1
[home:h2]
secret = s-h2
[home:h3]
secret = s-h3
[feeder:street]
limit_kw = 3
homes = h1, h2
[event:wide]
limit_kw = 6
start = +30
end = +400
[event:deep]
limit_kw = 3.5
start = +120
end = +250
"""

# Per home: (rated W, priority, critical, min on s, min off s, max off s or None)
LOADS = {
    "h1": [(2000, 5, False, 20, 30, None), (1500, 8, False, 0, 0, 60), (300, 9, True, 0, 0, None)],
    "h2": [(2500, 3, False, 60, 10, None), (800, 6, False, 10, 10, None), (1200, 2, False, 0, 40, 90)],
    "h3": [(3000, 4, False, 30, 30, 120), (500, 10, True, 0, 0, None), (1000, 1, False, 0, 0, None)],
}


def home_ini(home_id: str) -> tuple[str, list[str]]:
    return home_inis(home_id, [SimLoad(*load) for load in LOADS[home_id]], heartbeat_s=5, measure_period_s=15,
                     failsafe_after_s=3600)


class SafetyMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.sim = Simulation(AGGREGATOR, {h: home_ini(h) for h in HOMES})
        self.sim.settle()
        self.checked_round = None
        self.live_version = 0
        self.seen: dict[str, int] = {}  # board id -> switches checked
        self.last_switch: dict[tuple[str, int], float] = {}

    # ------------------------------------------------------------- rules

    @rule(seconds=st.sampled_from([0.05, 0.3, 1.0, 2.5, 7.0, 20.0, 45.0]))
    def time_passes(self, seconds):
        self.sim.run_until(self.sim.clock.seconds() + seconds)

    @rule(home=st.sampled_from(HOMES))
    def home_stops_answering(self, home):
        uplink = self.sim.homes[home].uplink
        if uplink is not None:
            self.sim.network.held.add(uplink)

    @rule(home=st.sampled_from(HOMES))
    def home_answers_again(self, home):
        uplink = self.sim.homes[home].uplink
        self.sim.network.held.discard(uplink)
        self.sim.settle()

    @rule(home=st.sampled_from(HOMES))
    def uplink_cut(self, home):
        self.sim.network.held.discard(self.sim.homes[home].uplink)
        self.sim.disconnect(home)
        self.sim.settle()

    @precondition(lambda self: any(self.sim.homes[h].uplink.closed for h in HOMES))
    @rule(home=st.sampled_from(HOMES))
    def home_reconnects(self, home):
        if self.sim.homes[home].uplink.closed:
            self.sim.connect(home)
            self.sim.settle()

    @rule(home=st.sampled_from(HOMES))
    def home_restarts(self, home):
        self.sim.network.held.discard(self.sim.homes[home].uplink)
        self.sim.restart_home(home)
        self.sim.settle()

    @rule(home=st.sampled_from(HOMES), relay=st.integers(1, 3), on=st.booleans())
    def owner_switches(self, home, relay, on):
        self.sim.homes[home].core.set_desired(f"{home}-l{relay}", on)
        self.sim.settle()

    @rule(home=st.sampled_from(HOMES), out=st.booleans())
    def owner_opts(self, home, out):
        core = self.sim.homes[home].core
        core.opt_out() if out else core.opt_in()
        self.sim.settle()

    @rule(limit_kw=st.sampled_from([1.0, 2.5, 4.0, 7.0]), starts_in=st.sampled_from([-5.0, 0.0, 10.0, 60.0]),
          lasts=st.sampled_from([15.0, 90.0, 300.0]), window=st.sampled_from([0.0, 20.0]))
    def operator_sets_the_live_event(self, limit_kw, starts_in, lasts, window):
        """Adds the event "live", or changes it (a new version)."""
        now = self.sim.clock.seconds()
        self.live_version += 1
        self.sim.aggregator.add_event("live", limit_kw, now + starts_in, now + starts_in + lasts,
                                      version=self.live_version, start_window_s=window, end_window_s=window)
        self.sim.settle()

    @rule()
    def operator_cancels_the_live_event(self):
        self.live_version += 1
        self.sim.aggregator.cancel_event("live", self.live_version)
        self.sim.settle()

    @rule(home=st.sampled_from(HOMES), twice=st.booleans(), to_home=st.booleans())
    def one_line_out_of_turn(self, home, twice, to_home):
        """The next line on one home's uplink, before everything else queued
        (reordered across links), optionally delivered twice."""
        uplink = self.sim.homes[home].uplink
        end = uplink if to_home else uplink.other
        index = self.sim.network.first_for(end)
        if index is not None and end not in self.sim.network.held:
            self.sim.network.deliver(index, again=twice)

    # -------------------------------------------------------- invariants

    @invariant()
    def rounds_keep_every_limit(self):
        summary = self.sim.aggregator.last_round
        if summary is None or summary is self.checked_round:
            return
        self.checked_round = summary
        # Homes that did not shed as asked (silent, or held on by their
        # constraints) can put one round over; the next counts them as they are.
        late = [h for h, r in summary.homes.items() if r["committed_w"] is None]
        over_budget = [h for h, r in summary.homes.items()
                       if r["committed_w"] is not None and r["budget_w"] is not None
                       and r["committed_w"] > r["budget_w"] + SLACK_W]
        if summary.feasible and not over_budget and not late and not summary.within_limit:
            self.fail(f"round {summary.number} over a limit: {summary}")

    @invariant()
    def homes_draw_within_their_budget(self):
        now = self.sim.clock.seconds()
        for home_id, sim in self.sim.homes.items():
            core = sim.core
            if core.budget is None or core.opted_out() or core._busy:
                continue
            must_w = sum(load.config.rated_w for load in core.loads.values() if load.mode(now) == "must")
            if core.drawn_w() > max(core.budget.budget_w, must_w) + SLACK_W:
                self.fail(f"{home_id} draws {core.drawn_w()} W, budget {core.budget.budget_w} W, must {must_w} W")

    @invariant()
    def relays_respect_minimum_times_and_critical_loads(self):
        for home_id, sim in self.sim.homes.items():
            for board in sim.boards.values():
                for moment, number, on, by_failsafe in board.switch_log[self.seen.get(board.config.id, 0):]:
                    key = home_id, number
                    # Never switched: the home counts it as switched when it first saw it, at 0.
                    since = self.last_switch.get(key, 0.0)
                    self.last_switch[key] = moment
                    load = sim.config.loads[f"{home_id}-l{number}"]
                    held = load.min_off_s if on else load.min_on_s
                    if moment - since < held - 1e-9 and not by_failsafe:
                        self.fail(f"{key}: switched {'on' if on else 'off'} {moment - since:.3f} s after its last "
                                  f"switch; its minimum is {held} s")
                    if load.critical and not on and sim.core.loads[load.id].desired:
                        self.fail(f"{key}: critical load {load.id} switched off though its owner wants it on")
                self.seen[board.config.id] = len(board.switch_log)

    def fail(self, message: str) -> None:
        raise AssertionError(message)


SafetyMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSafety = SafetyMachine.TestCase
