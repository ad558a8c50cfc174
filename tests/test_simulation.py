"""jeisson.simulation: the heap clock, the in-memory network, a whole fleet negotiating, processes that die."""

from jeisson.actuator.board import COLD_LOAD, HOME, POWER_DOWN
from jeisson.simulation import Network, ProcessClock, SimClock, SimLoad, Simulation, home_inis, random_fleet


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


# ----------------------------------------------------- processes that die

TWO_HOMES = "[aggregator]\nlisten = tcp:0\nheartbeat_s = 5\n[home:a]\nsecret = s-a\n[home:b]\nsecret = s-b\n"


def two_homes(tmp_path, **kwargs):
    return Simulation(TWO_HOMES, {h: home_inis(h, [SimLoad(1000), SimLoad(500, min_on_s=60)], heartbeat_s=5,
                                               **kwargs) for h in "ab"}, store_dir=str(tmp_path))


def test_a_process_clock_drops_every_timer_of_a_killed_process_and_sets_none_after():
    clock = SimClock()
    process = ProcessClock(clock)
    ran = []
    process.callLater(1, ran.append, "mine")
    clock.callLater(2, ran.append, "the world's")
    assert len(process.getDelayedCalls()) == 1
    process.kill()
    late = process.callLater(1, ran.append, "after death")
    clock.advance(5)
    assert ran == ["the world's"] and not late.active() and process.getDelayedCalls() == []


def test_the_physical_draw_is_the_boards_closed_relays_in_total_and_per_feeder(tmp_path):
    ini = TWO_HOMES + "[feeder:f]\nlimit_kw = 1\nhomes = a\n"
    sim = Simulation(ini, {h: home_inis(h, [SimLoad(1000), SimLoad(500, desired=False)]) for h in "ab"},
                     store_dir=str(tmp_path))
    sim.run_until(1)
    assert sim.physical_draw() == 2000 and sim.feeder_draws() == {"f": 1000}
    sim.homes["b"].boards["b-b0"].relays[1].on = True  # closed by hand: the truth, whatever the home believes
    assert sim.physical_draw() == 2500 and sim.home_draw("b") == 1500
    assert [(s.home, s.relay, s.on, s.own) for s in sim.switches] == [("a", 1, True, False), ("b", 1, True, False)]


def test_the_aggregator_killed_leaves_its_homes_to_reconnect_with_their_backoff_to_one_that_resumes(tmp_path):
    sim = two_homes(tmp_path)
    sim.aggregator.add_event("e", 1.2, 10, 600)
    sim.run_until(20)
    numbered = sim.aggregator.rounds.number
    assert numbered > 0 and sim.aggregator.homes["a"].connected
    old = sim.aggregator
    sim.aggregator_down()
    sim.settle()
    assert not sim.aggregator_running and old.clock.getDelayedCalls() == []
    assert sim.homes["a"].uplink.closed, "the home heard its link lost"
    sim.run_until(40)  # attempts fail while it is down, further and further apart
    assert sim.homes["a"].failed_attempts >= 5
    sim.block_uplink("b")
    sim.aggregator_up()
    assert sim.aggregator is not old and sim.aggregator.events[0].id == "e", "resumed from its store"
    sim.run_until(40 + 16)  # within the longest backoff, and its jitter
    assert sim.aggregator.homes["a"].connected and not sim.aggregator.homes["b"].connected
    assert sim.aggregator.rounds.number > numbered, "rounds numbered above the ones before the kill"
    # The home not back counts at its record, never at 0 W.
    assert sim.aggregator.homes["b"].cautious_w(now=sim.clock.seconds()) > 0


def test_a_killed_home_loses_what_its_store_had_not_committed_and_its_boards_keep_their_relays(tmp_path):
    sim = two_homes(tmp_path)
    sim.run_until(1)
    store = sim.homes["a"].store
    store.put("test", "committed", 1)
    store.durable()
    store.put("test", "queued", 2)  # the home's batch is 30 s: not on disk yet
    before = sim.homes["a"].boards["a-b0"].states
    sim.restart_home("a")
    assert sim.homes["a"].store is not store
    assert sim.homes["a"].store.state("test") == {"committed": 1}
    assert sim.homes["a"].boards["a-b0"].states == before
    sim.settle()
    assert sim.homes["a"].core.boards, "its board connected to the new process"


def test_a_power_blip_opens_the_relays_at_once_goes_silent_and_a_new_board_powers_up_after_the_outage(tmp_path):
    sim = two_homes(tmp_path, cold_load_s=(2, 2))
    sim.run_until(70)
    old = sim.homes["a"].boards["a-b0"]
    assert old.states == (True, True)
    sim.power_blip("a-b0", outage_s=5)
    assert old.states == (False, False) and old.causes[-2:] == [POWER_DOWN, POWER_DOWN]
    sim.run_until(74)
    # Silent, not closed: the home still holds its link (its heartbeat finds out).
    assert "a-b0" in sim.homes["a"].core.boards
    sim.run_until(75.5)
    new = sim.homes["a"].boards["a-b0"]
    assert new is not old and new.switch_log is old.switch_log and sim.homes["a"].power_ups["a-b0"] == 2
    assert new.relays[0].last_switch == 75, "power-up counts as a switch"
    assert new.states == (True, True), "its home switched back what it wants (min_off_s 0)"
    assert all(t >= 75 and not own for t, _, on, own in new.switch_log[-2:])
