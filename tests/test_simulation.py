"""jeisson.simulation: the heap clock, the in-memory network, a whole fleet negotiating."""

from jeisson.actuator.board import COLD_LOAD, HOME
from jeisson.simulation import Network, SimClock, SimLoad, Simulation, home_inis, random_fleet


def test_the_heap_clock_runs_calls_at_their_time_in_order_with_resets_and_cancels():
    clock = SimClock()
    ran = []
    clock.callLater(5, ran.append, "five")
    moved = clock.callLater(1, ran.append, "moved")
    gone = clock.callLater(2, ran.append, "gone")
    clock.callLater(3, lambda: ran.append(("three at", clock.seconds())))
    moved.reset(4)
    gone.cancel()
    assert sorted(c.getTime() for c in clock.getDelayedCalls()) == [3, 4, 5]
    clock.advance(4.5)
    assert ran == [("three at", 3), "moved"]
    assert clock.seconds() == 4.5
    clock.advance(1)
    assert ran[-1] == "five" and clock.next_time() is None


class Echo:
    def __init__(self, end, heard):
        self.end = end
        self.heard = heard

    def line_received(self, line):
        self.heard.append((self.end.peer, line))

    def connection_lost(self, reason):
        self.heard.append((self.end.peer, "lost"))


def test_the_network_keeps_each_links_order_and_holds_ends_that_do_not_answer():
    network = Network()
    heard = []
    a, b = network.pair("a", "b")
    c, d = network.pair("c", "d")
    for end in (a, b, c, d):
        end.session = Echo(end, heard)
    a.send_line(b"1\n")
    a.send_line(b"2\n")
    c.send_line(b"3\n")
    network.held.add(b)
    network.deliver_all()
    assert heard == [("d", b"3")]
    assert network.first_for(b) == 0
    network.deliver(network.first_for(b), again=True)  # duplicated
    network.held.clear()
    a.close()
    network.deliver_all()
    # In flight before the cut: still delivered, then the loss at both ends.
    assert heard[1:] == [("b", b"1"), ("b", b"1"), ("b", b"2"), ("a", "lost"), ("b", "lost")]


def test_a_small_fleet_negotiates_within_its_limit_in_a_few_rounds():
    # The event starts once the homes have switched on what their owners
    # want (the boards power up open; min_off_s is at most 60 s).
    aggregator_ini, fleet = random_fleet(20, seed=3, event_start_s=90)
    sim = Simulation(aggregator_ini, fleet)
    sim.run_until(89)
    before = sum(sim.relays_w(h) for h in sim.homes)
    sim.run_until(120)
    limit = sim.aggregator.current_event.limit_w
    assert before > limit
    assert sim.aggregator.converged_rounds is not None and sim.aggregator.converged_rounds <= 3
    assert sim.aggregator.last_round.within_limit
    assert sum(sim.relays_w(h) for h in sim.homes) <= limit


def test_simulated_boards_power_up_open_and_the_home_switches_on_what_its_owner_wants():
    loads = [SimLoad(1000, critical=True), SimLoad(2000), SimLoad(500, min_off_s=30), SimLoad(700, desired=False)]
    sim = Simulation("[aggregator]\nlisten = tcp:0\n[home:h]\nsecret = s-h\n",
                     {"h": home_inis("h", loads)})
    board = sim.homes["h"].boards["h-b0"]
    # The critical load's relay (safe state on) closed at power-up on its
    # own (a 0 s cold-load window), before the home's first HELLO.
    assert board.switch_log[0] == (0.0, 1, True, True) and board.causes[0] == COLD_LOAD
    sim.run_until(1)
    assert board.states == (True, True, False, False)
    assert board.switch_log[1:] == [(0.0, 2, True, False)]
    sim.run_until(30)
    assert board.states == (True, True, True, False), "min_off_s counted from power-up"


def test_a_cold_load_window_keeps_critical_relays_open_until_the_home_takes_charge():
    sim = Simulation("[aggregator]\nlisten = tcp:0\n[home:h]\nsecret = s-h\n",
                     {"h": home_inis("h", [SimLoad(1000, critical=True)], cold_load_s=(5, 10))})
    board = sim.homes["h"].boards["h-b0"]
    assert board.states == (False,)
    sim.run_until(1)
    # Welcomed at once: the home, not the board, switched it on.
    assert board.states == (True,) and board.causes == [HOME]


def test_a_restarted_home_resumes_from_its_store_and_keeps_its_loads_minimum_times():
    sim = Simulation("[aggregator]\nlisten = tcp:0\n[home:h]\nsecret = s-h\n",
                     {"h": home_inis("h", [SimLoad(1000, min_on_s=60)])})
    board = sim.homes["h"].boards["h-b0"]
    sim.run_until(1)
    assert board.switch_log == [(0.0, 1, True, False)]
    sim.run_until(10)
    sim.restart_home("h")
    sim.homes["h"].core.set_desired("h-l1", False)
    sim.run_until(59.9)
    assert board.states == (True,), "the restarted home forgot the load's min_on_s"
    sim.run_until(61)
    assert board.switch_log[1:] == [(60.0, 1, False, False)]
