"""What the dashboards cost: ``python bench/dashboard_cost.py --homes 10000``.

One aggregator process (the real ``twistd jeisson-aggregator``, its API on
loopback) and N simulated homes in helper processes, as
``bench/round_latency.py`` runs them (its ``--run-simulated-homes``
helpers: each home on its own TCP connection, its board in memory; the
homes' link in plaintext on loopback, the baseline of that bench, so that
what is measured is the dashboards and not TLS).  Events are added through
the aggregator's events file, one after the other, and each event's first
round is measured as there: the **cycle**, from the event's start to the
last commitment counted (the aggregator's own log line).

Side by side in the same run, the events alternate: one with no dashboard
open, the next with ``--dashboards`` (10) open, each a real server-sent
events connection (``GET /api/v1/stream``) held by a helper process of its
own that reads every byte as a browser would (HTTP/1.1, chunked).  The
dashboards are opened before their event (their snapshot read) and closed
after it, so that the events without any run with no stream open at all.

Measured:

- the time from a round's end (its ``finished``, the aggregator's clock,
  to the millisecond) to each dashboard's receipt of its ``round`` frame:
  p50 and p99 over every dashboard and every round; and, from the
  aggregator's debug line, how long after the round's end the push wrote it
  (``pushed_after``: the round's own bookkeeping and the listeners before
  the push) and the rest (``wire``: the socket and the reader);
- push bytes a second per dashboard, from its snapshot read to its close
  (each event's round and the homes' changes in it, the power, the quiet
  after), and the snapshot's size;
- the cycle's p50 with dashboards against without (``cycle_ratio``,
  the target being within 10 %), and the aggregator's CPU time from just
  before the event is written to its round's end (``cpu_ratio``: less
  sensitive than the wall clock to a machine shared with other work).

Each dashboard also does what the page does at each ``round`` frame: asks
the API for the 50 rows it shows (``GET /api/v1/homes?id=...``, dashboard k
page k) on a thread of its own, one request at a time: ``rows`` is a
round's end to those rows read (p50, p99) and their size.  ``open`` is how
long the 10 dashboards, opened at once, take to read their snapshots, and
the aggregator's CPU meanwhile.

Last line: ``homes=N dashboards=D update_p50_ms=... update_p99_ms=...
pushed_after_p50_ms=... wire_p50_ms=... push_bytes_per_s=... snapshot_bytes=... cycle_p50_ms_none=...
cycle_p50_ms_dashboards=... cycle_ratio=... cpu_p50_ms_none=...
cpu_p50_ms_dashboards=... cpu_ratio=... rows_p50_ms=... rows_p99_ms=... rows_bytes=...
open_p50_s=... open_cpu_p50_ms=...``.
"""

import argparse
import json
import pathlib
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

import round_latency as rl  # noqa: E402  (the bench's own folder, above)

BIN = pathlib.Path(sys.executable).parent


# ------------------------------------------------------ the dashboards' helper


class SseClient:
    """One dashboard's stream, read as a browser reads it: the HTTP head, the
    chunked body, each event's name and data."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        self.sock.setblocking(False)
        self.raw = b""
        self.head_done = False
        self.chunk_left = 0  # bytes of the current chunk still to come
        self.crlf_left = 0  # then its CRLF
        self.text = b""
        self.scanned = 0  # how much of text holds no frame's end
        self.body_bytes = 0
        self.snapshot_bytes = 0
        self.after_snapshot = 0  # body bytes after the snapshot
        self.rounds: list[dict[str, Any]] = []  # {"number", "finished", "arrived"}
        self.pending: int | None = None  # the snapshot's homes still to come (None: no snapshot yet)
        self.closed = False
        self.ready_at: float | None = None  # every page of the snapshot read
        self.on_round: Any = None  # called with each round frame (the page's fetch of its rows)

    def feed(self, data: bytes, now: float) -> None:
        self.raw += data
        if not self.head_done:
            head, sep, rest = self.raw.partition(b"\r\n\r\n")
            if not sep:
                return
            status = head.split(b"\r\n", 1)[0]
            if b" 200 " not in status:
                raise SystemExit(f"the stream answered {status!r}")
            self.head_done = True
            self.raw = rest
        while self.raw:
            if self.chunk_left == 0 and self.crlf_left == 0:
                line, sep, rest = self.raw.partition(b"\r\n")
                if not sep:
                    return
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    self.closed = True
                    return
                self.chunk_left, self.crlf_left = size, 2
                self.raw = rest
            if self.chunk_left:
                take = self.raw[:self.chunk_left]
                self.raw = self.raw[len(take):]
                self.chunk_left -= len(take)
                self.body_bytes += len(take)
                self.text += take
                continue
            drop = min(self.crlf_left, len(self.raw))
            self.raw = self.raw[drop:]
            self.crlf_left -= drop
        self._frames(now)

    def _frames(self, now: float) -> None:
        while True:
            # From where the last look stopped: a megabyte frame comes in many reads.
            end = self.text.find(b"\n\n", max(0, self.scanned - 1))
            if end < 0:
                self.scanned = len(self.text)
                return
            block, self.text, self.scanned = self.text[:end], self.text[end + 2:], 0
            event = data = None
            for line in block.split(b"\n"):
                if line.startswith(b"event: "):
                    event = line[7:].decode()
                elif line.startswith(b"data: "):
                    data = line[6:]
            size = len(block) + 2
            if event == "snapshot" and data is not None:
                self.pending = json.loads(data).get("homes_pending", 0)
                self.snapshot_bytes = size
                if self.pending == 0:
                    self.ready_at = now
            elif self.ready_at is None:
                # Until the snapshot's last page is in, counted with it.
                self.snapshot_bytes += size
                if event == "homes" and data is not None:
                    page = json.loads(data)
                    if "pending" in page:
                        self.pending = page["pending"]
                        if self.pending == 0:
                            self.ready_at = now
            else:
                self.after_snapshot += size
            if event == "round" and data is not None:
                r = json.loads(data)
                self.rounds.append({"number": r["number"], "finished": r["finished"], "arrived": now})
                if self.on_round is not None:
                    self.on_round(r)


class PageFetcher:
    """What the page does at each round: ``GET /api/v1/homes?id=...`` for
    the 50 rows it shows (dashboard k shows page k), on a thread of its own
    (a browser's fetch does not stop its stream).  ``pages``: each round's
    end to its rows read, and their bytes."""

    def __init__(self, port: int, ids: list[str]):
        import http.client
        import threading
        import urllib.parse

        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.path = "/api/v1/homes?" + urllib.parse.urlencode([("id", i) for i in ids])
        self.lock = threading.Lock()
        self.busy = False
        self.pages: list[dict[str, Any]] = []
        self.threading = threading

    def round(self, r: dict[str, Any]) -> None:
        with self.lock:
            if self.busy:  # as the page: one request at a time
                return
            self.busy = True
        self.threading.Thread(target=self._fetch, args=(r,), daemon=True).start()

    def _fetch(self, r: dict[str, Any]) -> None:
        try:
            self.connection.request("GET", self.path, headers={"Accept": "application/json"})
            response = self.connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise SystemExit(f"the homes' page answered {response.status}: {body[:200]!r}")
            self.pages.append({"number": r["number"], "finished": r["finished"], "read": time.time(),
                               "bytes": len(body), "homes": len(json.loads(body)["homes"])})
        finally:
            with self.lock:
                self.busy = False


def run_dashboards(port: int, count: int, homes: int = 0) -> None:
    """A helper holding ``count`` streams: says ``{"ready"}`` once every
    snapshot is read; on ``report`` (standard input), what each read.
    With ``homes``, each fetches its page of rows at each round."""
    clients = [SseClient(port) for _ in range(count)]
    fetchers = []
    if homes:
        ids = sorted(rl.home_id(i) for i in range(homes))
        for k, client in enumerate(clients):
            first = 50 * k % len(ids)  # fewer pages than dashboards: some show the same
            fetcher = PageFetcher(port, ids[first:first + 50])
            client.on_round = fetcher.round
            fetchers.append(fetcher)
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
    selector.register(sys.stdin, selectors.EVENT_READ, None)
    ready_at = None
    while True:
        for key, _ in selector.select(1.0):
            now = time.time()
            if key.data is None:
                line = sys.stdin.readline()
                if not line or line.strip() == "report":
                    elapsed = now - (ready_at or now)
                    print(json.dumps({"rounds": [c.rounds for c in clients], "elapsed": elapsed,
                                      "pages": [p for f in fetchers for p in f.pages],
                                      "after_snapshot": [c.after_snapshot for c in clients],
                                      "snapshot": clients[0].snapshot_bytes}), flush=True)
                    if not line:
                        return
                continue
            client = key.data
            try:
                data = client.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                raise SystemExit("the aggregator closed a stream")
            client.feed(data, now)
        if ready_at is None and all(c.ready_at for c in clients):
            ready_at = time.time()
            print(json.dumps({"ready": count}), flush=True)


# ------------------------------------------------------------------ the run


def parse_utc(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=6, help="events (half with dashboards, half without)")
    parser.add_argument("--dashboards", type=int, default=10)
    parser.add_argument("--procs", type=int, default=3, help="helper processes for the homes")
    parser.add_argument("--loads", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, the log)")
    args = parser.parse_args()
    n = args.homes
    work = pathlib.Path(tempfile.mkdtemp(prefix="jeisson-dashboards-"))
    port, api_port = rl.free_port(), rl.free_port()
    demand = sum(w for i in range(n) for w, _ in rl.loads_of(i, args.loads))
    config = [f"[aggregator]\nlisten = tcp:{port}:interface=127.0.0.1:backlog=4096\nheartbeat_s = 30\n"
              "round_period_s = 3600\nround_timeout_s = 60\nconverge_s = 0\nevents_file = events.ini\n"
              "events_poll_s = 0.1\nseed = 1\nmax_connections_per_address = 0\n"
              "max_new_connections_per_address = 0\n[tls]\nplaintext = yes\n"
              f"[api]\nlisten = tcp:{api_port}:interface=127.0.0.1\n"]
    config += [f"[home:{rl.home_id(i)}]\nsecret = s-{rl.home_id(i)}\n" for i in range(n)]
    (work / "aggregator.ini").write_text("".join(config))
    (work / "events.ini").write_text("")
    aggregator = subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", "--logfile", str(work / "aggregator.log"),
         "jeisson-aggregator", "--config", str(work / "aggregator.ini")], cwd=work)
    helpers: list[subprocess.Popen[str]] = []
    dashboards: subprocess.Popen[str] | None = None
    try:
        rl.wait_for_listening(port, 60)
        rl.wait_for_listening(api_port, 60)
        started = time.monotonic()
        helpers = [subprocess.Popen([sys.executable, str(HERE.parent / "round_latency.py"), "--run-simulated-homes",
                                     str(port), str(first), str(count), str(args.loads)],
                                    stdout=subprocess.PIPE, text=True)
                   for first, count in rl.spread(n, args.procs)]
        for helper in helpers:
            reply = rl.read_json_line(helper, 900)
            if "ready" not in reply:
                raise SystemExit(f"a helper failed: {reply}")
        print(f"{n} homes registered in {time.monotonic() - started:.1f} s", flush=True)
        time.sleep(3.0)

        cycles: dict[str, list[float]] = {"none": [], "dashboards": []}
        cpus: dict[str, list[float]] = {"none": [], "dashboards": []}  # the aggregator's, ms, each event
        updates_ms: list[float] = []
        update_rounds: list[tuple[int, float]] = []  # (round number, ms from its end to a dashboard's update)
        rates: list[float] = []
        opens: list[float] = []  # s for every dashboard to read its snapshot, all opened at once
        open_cpus: list[float] = []  # the aggregator's CPU ms meanwhile
        pages_ms: list[float] = []  # a round's end to a dashboard's rows read from the API
        page_bytes: list[int] = []
        snapshot = 0
        length = 2.0 + 2.0 * n / 1000
        for k in range(args.rounds):
            kind = "dashboards" if k % 2 else "none"
            if kind == "dashboards":
                opened = time.monotonic()
                cpu_open = rl.cpu_seconds(aggregator.pid)
                dashboards = subprocess.Popen([sys.executable, str(HERE), "--dashboards", str(api_port),
                                               str(args.dashboards), str(n)], stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, text=True)
                rl.read_json_line(dashboards, 300)
                opens.append(time.monotonic() - opened)
                open_cpus.append((rl.cpu_seconds(aggregator.pid) - cpu_open) * 1e3)
                print(f"{args.dashboards} dashboards open, their snapshots read in "
                      f"{opens[-1]:.1f} s, aggregator CPU {open_cpus[-1]:.0f} ms", flush=True)
                time.sleep(1.0)
            start = time.time() + 1.0
            event = f"trial-{k}"
            cpu = rl.cpu_seconds(aggregator.pid)
            (work / "events.ini").write_text(
                f"[event:{event}]\nlimit_kw = {0.6 * demand / 1000:.3f}\nstart = {rl.utc(start)}\n"
                f"end = {rl.utc(start + length)}\n")
            for helper in helpers:
                reply = rl.read_json_line(helper, length + 30)
                if reply.get("event") != event:
                    raise SystemExit(f"unexpected from a helper: {reply}")
            took = rl.round_took(work, event, 30)
            cpu = rl.cpu_seconds(aggregator.pid) - cpu
            cycles[kind].append(took)
            cpus[kind].append(cpu * 1e3)
            # After the event's end, and the homes' restoring, before the next.
            time.sleep(max(start + length + 0.5 + n / 2000 - time.time(), 0))
            line = f"event {k + 1} ({kind}): cycle {took:.1f} ms, aggregator CPU {cpu * 1e3:.0f} ms"
            if dashboards is not None:
                stdin, stdout = dashboards.stdin, dashboards.stdout
                assert stdin is not None and stdout is not None
                stdin.write("report\n")
                stdin.flush()
                report = rl.read_json_line(dashboards, 60)
                stdin.close()
                dashboards.wait(30)
                dashboards = None
                ups = [(r["arrived"] - parse_utc(r["finished"])) * 1e3 for rounds in report["rounds"] for r in rounds]
                update_rounds += [(r["number"], (r["arrived"] - parse_utc(r["finished"])) * 1e3)
                                  for rounds in report["rounds"] for r in rounds]
                updates_ms += ups
                rate = sum(report["after_snapshot"]) / len(report["after_snapshot"]) / max(report["elapsed"], 1e-9)
                rates.append(rate)
                pages_ms += [(p["read"] - parse_utc(p["finished"])) * 1e3 for p in report["pages"]]
                page_bytes += [p["bytes"] for p in report["pages"]]
                snapshot = report["snapshot"]
                line += (f"; round to dashboard: {len(ups)} updates, p50 {rl.percentile(ups, 0.5):.1f} ms, max "
                         f"{max(ups):.1f} ms; push {rate / 1024:.1f} KiB/s per dashboard over "
                         f"{report['elapsed']:.1f} s; snapshot {snapshot / 1024:.0f} KiB")
            print(line, flush=True)
        if not updates_ms:
            raise SystemExit("no round reached a dashboard")
        # When the aggregator wrote each round to the streams (its debug
        # line), after the round's end: the rest of an update's time is the
        # socket's and the reader's.
        pushed = {int(m.group(1)): float(m.group(2)) for m in re.finditer(
            r"round (\d+) pushed to \d+ stream\(s\), ([\d.]+) ms after it finished", rl.read_log(work))}
        wire_ms = [up - pushed[number] for number, up in update_rounds if number in pushed]
        none_p50 = rl.percentile(cycles["none"], 0.5)
        with_p50 = rl.percentile(cycles["dashboards"], 0.5)
        print(f"cycle without dashboards: {', '.join(f'{c:.0f}' for c in cycles['none'])} ms; with "
              f"{args.dashboards}: {', '.join(f'{c:.0f}' for c in cycles['dashboards'])} ms")
        print(f"homes={n} dashboards={args.dashboards} update_p50_ms={rl.percentile(updates_ms, 0.5):.1f} "
              f"update_p99_ms={rl.percentile(updates_ms, 0.99):.1f} "
              f"pushed_after_p50_ms={rl.percentile(list(pushed.values()) or [0.0], 0.5):.1f} "
              f"wire_p50_ms={rl.percentile(wire_ms or [0.0], 0.5):.1f} "
              f"push_bytes_per_s={sum(rates) / len(rates):.0f} snapshot_bytes={snapshot} "
              f"cycle_p50_ms_none={none_p50:.1f} cycle_p50_ms_dashboards={with_p50:.1f} "
              f"cycle_ratio={with_p50 / none_p50:.3f} cpu_p50_ms_none={rl.percentile(cpus['none'], 0.5):.0f} "
              f"cpu_p50_ms_dashboards={rl.percentile(cpus['dashboards'], 0.5):.0f} "
              f"cpu_ratio={rl.percentile(cpus['dashboards'], 0.5) / rl.percentile(cpus['none'], 0.5):.3f} "
              f"rows_p50_ms={rl.percentile(pages_ms or [0.0], 0.5):.1f} "
              f"rows_p99_ms={rl.percentile(pages_ms or [0.0], 0.99):.1f} "
              f"rows_bytes={rl.percentile([float(b) for b in page_bytes] or [0.0], 0.5):.0f} "
              f"open_p50_s={rl.percentile(opens, 0.5):.2f} open_cpu_p50_ms={rl.percentile(open_cpus, 0.5):.0f}")
    finally:
        for process in [*helpers, *([dashboards] if dashboards is not None else []), aggregator]:
            rl.stop(process)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--dashboards":
        run_dashboards(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    else:
        main()
