"""What the API's cap on rows costs a whole export:
``python bench/export_cost.py [--homes 10] [--samples 20000] [--cap 10000] [--repeats 5]``.

One store of ``--homes`` x ``--samples`` raw measurements (one a second
per home, the last ones a minute ago), copied for two real aggregator
processes (``twistd jeisson-aggregator``, the default secure config with
credentials from ``jeisson.pki``, no home connected) that differ only in
``[api] max_rows``: ``--cap`` (the default, 10,000) and, the baseline,
above the total, so that every row comes in one reply.  ``jeisson export``
(``jeisson.cli.main`` in this process: the command without its Python
start-up) takes every sample of the range from each, alternately,
``--repeats`` times; the two CSVs must be identical.  The figures: the
median seconds of each, their ratio, the requests the paged export made,
and rows a second.
"""

import argparse
import io
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
if REPO not in sys.path:  # this tree's jeisson, not a copy installed in the virtualenv
    sys.path.insert(0, REPO)

from twisted.internet import task  # noqa: E402

from jeisson import cli, pki  # noqa: E402
from jeisson.client import commands  # noqa: E402
from jeisson.client.exchange import ClientError, api_target  # noqa: E402
from jeisson.demo import Fleet, free_ports  # noqa: E402
from jeisson.store.sqlite import SqliteStore  # noqa: E402
from jeisson.wire.utc import format_utc  # noqa: E402


def make_store(path: str, homes: list[str], samples: int, last: float) -> None:
    """The schema as jeisson makes it, then the samples, in one transaction."""
    store = SqliteStore(path, task.Clock())
    store.open()
    store.close_now()
    db = sqlite3.connect(path)
    try:
        with db:
            db.executemany("INSERT INTO measurements (subject, at, watts, span_s) VALUES (?, ?, ?, 0)",
                           ((home, last - samples + i, 1000.0 + (i * 37) % 2000) for home in homes
                            for i in range(samples)))
    finally:
        db.close()  # the last connection: the write-ahead log is folded into the file, which is copied


def aggregator_ini(work: str, folder: str, homes: list[str], cap: int) -> str:
    listen, api = free_ports(2)
    allowed = "".join(f"[home:{home}]\nsecret = s-{home}\n" for home in homes)
    path = os.path.join(work, f"cap-{cap}.ini")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"[aggregator]\nlisten = tcp:{listen}:interface=127.0.0.1\n\n[api]\n"
                f"listen = tcp:{api}:interface=127.0.0.1\nmax_rows = {cap}\n\n[store]\npath = cap-{cap}.sqlite\n\n"
                f"{allowed}\n[tls]\nca = {folder}/{pki.CA_CERT}\ncert = {folder}/aggregator.pem\n"
                f"key = {folder}/aggregator.key\ncrl = {folder}/crl.pem\n")
    return path, f"http://127.0.0.1:{api}"


def wait_for_api(url: str, fleet: Fleet, timeout: float = 60.0) -> None:
    api = commands.Api(api_target(url), timeout=2.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fleet.dead():
            raise SystemExit(f"an aggregator stopped: {fleet.dead()} (see its log in {fleet.workdir})")
        try:
            api.json(commands.status_request())
            return
        except ClientError:
            time.sleep(0.1)
    raise SystemExit(f"no API at {url} after {timeout:g} s")


class Counted:
    """``jeisson.client.commands.send``, counting the requests."""

    def __init__(self, send):
        self.send = send
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.send(*args, **kwargs)


def export(url: str, since: str, until: str) -> tuple[float, str]:
    out = io.StringIO()
    start = time.perf_counter()
    code = cli.main(["export", "--since", since, "--until", until, "--api", url, "--timeout", "120"], out=out)
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"jeisson export from {url} exited {code}")
    return seconds, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=10)
    parser.add_argument("--samples", type=int, default=20_000, help="per home")
    parser.add_argument("--cap", type=int, default=10_000, help="[api] max_rows of the paged aggregator")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    homes = [f"home-{i:04d}" for i in range(args.homes)]
    total = args.homes * args.samples
    work = tempfile.mkdtemp(prefix="jeisson-export-cost-")
    folder = os.path.join(work, "pki")
    pki.init(folder)
    last = time.time() - 60
    make_store(os.path.join(work, f"cap-{args.cap}.sqlite"), homes, args.samples, last)
    whole = total + 1
    shutil.copy(os.path.join(work, f"cap-{args.cap}.sqlite"), os.path.join(work, f"cap-{whole}.sqlite"))
    fleet = Fleet(work)
    try:
        urls = {}
        for cap in (args.cap, whole):
            config, urls[cap] = aggregator_ini(work, folder, homes, cap)
            fleet.start(f"aggregator-{cap}", "jeisson-aggregator", config)
        for url in urls.values():
            wait_for_api(url, fleet)
        since, until = format_utc(last - args.samples - 1), format_utc(last + 1)
        counted = Counted(commands.send)
        commands.send = counted
        times: dict[int, list[float]] = {cap: [] for cap in urls}
        requests = []
        texts = {}
        for repeat in range(args.repeats):
            for cap in (urls if repeat % 2 == 0 else reversed(list(urls))):
                counted.calls = 0
                seconds, texts[cap] = export(urls[cap], since, until)
                times[cap].append(seconds)
                if cap == args.cap:
                    requests.append(counted.calls)
            rows = len(texts[args.cap].splitlines()) - 1
            if texts[args.cap] != texts[whole] or rows != total:
                raise SystemExit(f"the paged export differs from the whole one ({rows} rows, expected {total})")
            print(f"repeat {repeat + 1}: paged {times[args.cap][-1]:.2f} s in {requests[-1]} requests,"
                  f" one reply {times[whole][-1]:.2f} s", flush=True)
    finally:
        fleet.stop()
        shutil.rmtree(work, ignore_errors=True)
    paged, one = statistics.median(times[args.cap]), statistics.median(times[whole])
    print(f"homes={args.homes} rows={total} cap={args.cap} requests={max(requests)} paged_s={paged:.2f}"
          f" one_reply_s={one:.2f} ratio={paged / one:.2f} paged_rows_per_s={total / paged:.0f}"
          f" one_reply_rows_per_s={total / one:.0f}")


if __name__ == "__main__":
    main()
