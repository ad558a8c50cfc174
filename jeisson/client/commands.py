"""The ``jeisson`` command over the aggregator's API (docs/operations.rst).

::

    jeisson status                      the limit, committed and measured, the events' countdowns
    jeisson homes [--connected]         each home's demand, budget, power and loads
    jeisson events list [--state S]
    jeisson events add ID --limit-kw X --start T --end T [--start-window-s S] [--end-window-s S]
    jeisson events modify ID [--limit-kw X] [--start T] [--end T] [--start-window-s S] [--end-window-s S]
    jeisson events cancel ID
    jeisson why HOME LOAD [--at T]      why a load is on or off, from the aggregator's journal
    jeisson export --since T [--until T] [--home ID]... [-o FILE]   measurements as CSV

Every command takes ``--api URL`` (default ``$JEISSON_API``, else
http://127.0.0.1:8480), ``--token-file FILE`` (or ``$JEISSON_TOKEN``),
``--cert FILE --key FILE --ca FILE`` for an https:// API that wants an
operator's certificate, ``--timeout S`` and ``--json`` (the API's JSON as
it came, for scripts).  Times (T) are what ``jeisson.moments`` reads:
UTC text, ``+SECONDS``/``-SECONDS`` from now, ``HH:MM`` today (UTC), epoch
seconds; they are checked here and sent as typed, so that ``+60`` counts
from the aggregator's clock, except ``export``'s, made absolute here once
(this machine's clock) so that every page of a long export asks the same
range (``jeisson.client.export``).

Exit status (``jeisson.client.exchange``): 0 done, 1 the API said no (its
message printed), 2 usage, 3 the API cannot be reached, 4 the API failed.

Each command is two pure halves around one request: a function from the
parsed arguments to a ``Request`` (``*_request``) and one from the reply's
JSON to text (``jeisson.client.render``), both tested without a socket.
"""

import argparse
import json
import math
import os
import ssl
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import attrs

from jeisson.client import export, render
from jeisson.client.exchange import (
    DEFAULT_API,
    DEFAULT_TIMEOUT_S,
    ClientError,
    Refused,
    Reply,
    Request,
    ServerFailed,
    Target,
    UsageProblem,
    api_target,
    json_of,
    judge,
    read_token,
    send,
    tls_context,
)
from jeisson.moments import FORMS, parse_moment
from jeisson.wire.utc import format_utc

Command = Callable[[argparse.Namespace, TextIO], int]

STATES = ("scheduled", "in-force", "ended", "cancelled")

# The API's field names as the command's options, to name a refused field
# as the user typed it.
EVENT_OPTIONS = {"id": "ID", "limit_kw": "--limit-kw", "limit_w": "--limit-kw", "start": "--start", "end": "--end",
                 "start_window_s": "--start-window-s", "end_window_s": "--end-window-s"}


@attrs.frozen
class Api:
    """Where the API is and the credentials to give it."""

    target: Target
    context: ssl.SSLContext | None = None
    token: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S

    def call(self, request: Request, options: Mapping[str, str] | None = None) -> Reply:
        """Send ``request``; its reply when a success, else the error
        (``judge``)."""
        reply = send(self.target, request, self.context, self.token, self.timeout)
        return judge(reply, f"{request.method} {request.target(self.target.prefix)}", dict(options or {}))

    def json(self, request: Request, options: Mapping[str, str] | None = None) -> dict[str, Any]:
        return json_of(self.call(request, options), f"{request.method} {request.target(self.target.prefix)}")


def api_from(args: argparse.Namespace, environ: Mapping[str, str], warn: TextIO | None = None) -> Api:
    """The ``Api`` the options (then ``JEISSON_API``, ``JEISSON_TOKEN``)
    name.  TLS options need an https:// URL; a token sent in the clear
    beyond this machine is warned about on ``warn``."""
    target = api_target(_option(args, "api") or environ.get("JEISSON_API") or DEFAULT_API)
    ca, cert, key = _option(args, "ca"), _option(args, "cert"), _option(args, "key")
    tls = {"--ca": ca, "--cert": cert, "--key": key}
    given = [name for name, value in tls.items() if value is not None]
    context = None
    if target.scheme == "https":
        context = tls_context(ca, cert, key)
    elif given:
        raise UsageProblem(f"{', '.join(given)}: TLS options need an https:// --api URL, not {target.url}")
    token_file = _option(args, "token_file")
    if token_file is not None:
        token: str | None = read_token(token_file)
    else:
        token = environ.get("JEISSON_TOKEN", "").strip() or None
    if token is not None and target.scheme == "http" and not target.loopback and warn is not None:
        warn.write(f"jeisson: warning: sending a token in the clear to {target.url} (use https://)\n")
    return Api(target=target, context=context, token=token, timeout=_option(args, "timeout"))


def checked_moment(option: str, value: str | None, now: float) -> str | None:
    """``value`` as typed, once ``jeisson.moments`` can read it; else a
    usage error naming ``option``."""
    if value is None:
        return None
    try:
        parse_moment(value, now)
    except ValueError:
        raise UsageProblem(f"{option} {value!r}: not a time: give {FORMS}") from None
    return value.strip()


# The requests, pure: the parsed arguments to what the API is asked.


def status_request() -> Request:
    return Request("GET", "/status")


def homes_request(connected: bool) -> Request:
    return Request("GET", "/homes", (("connected", "true"),) if connected else ())


def events_request(state: str | None) -> Request:
    return Request("GET", "/events", (("state", state),) if state else ())


def _event_fields(args: argparse.Namespace, now: float) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if args.limit_kw is not None:
        fields["limit_kw"] = args.limit_kw
    for name in ("start", "end"):
        value = checked_moment(f"--{name}", getattr(args, name), now)
        if value is not None:
            fields[name] = value
    for name in ("start_window_s", "end_window_s"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    return fields


def add_request(args: argparse.Namespace, now: float) -> Request:
    return Request("POST", "/events", body={"id": args.id, **_event_fields(args, now)})


def modify_request(args: argparse.Namespace, now: float) -> Request:
    fields = _event_fields(args, now)
    if not fields:
        raise UsageProblem("nothing to change: give --limit-kw, --start, --end, --start-window-s or --end-window-s")
    return Request("PUT", f"/events/{_segment(args.id)}", body=fields)


def cancel_request(event_id: str) -> Request:
    return Request("DELETE", f"/events/{_segment(event_id)}")


def why_request(home: str, load: str, at: str | None, now: float) -> Request:
    query = [("home", home), ("load", load)]
    moment = checked_moment("--at", at, now)
    if moment is not None:
        query.append(("at", moment))
    return Request("GET", "/why", tuple(query))


def export_request(since: str, until: str | None, homes: Sequence[str], as_csv: bool, now: float) -> Request:
    query = [("since", checked_moment("--since", since, now) or "")]
    until = checked_moment("--until", until, now)
    if until is not None:
        query.append(("until", until))
    query += [("home", home) for home in homes]
    if as_csv:
        query.append(("format", "csv"))
    return Request("GET", "/measurements", tuple(query), accept="text/csv" if as_csv else "application/json")


def _segment(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


# The commands: one request, its answer printed.


def _print_json(body: Any, out: TextIO) -> None:
    out.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")


def _show(args: argparse.Namespace, out: TextIO, body: dict[str, Any], text: Callable[[], str]) -> int:
    """``body`` as it came with ``--json``, else ``text()``."""
    if args.json:
        _print_json(body, out)
    else:
        out.write(text() + "\n")
    return 0


def _status(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    body = api.json(status_request())
    return _show(args, out, body, lambda: render.status_text(body))


def _homes(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    body = api.json(homes_request(args.connected))
    return _show(args, out, body, lambda: render.homes_table(_list(body, "homes")))


def _events_list(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    body = api.json(events_request(args.state))
    return _show(args, out, body, lambda: render.events_table(_list(body, "events")))


def _verdict(args: argparse.Namespace, api: Api, request: Request, out: TextIO) -> int:
    try:
        body = api.json(request, EVENT_OPTIONS)
    except Refused as e:
        code = (e.body or {}).get("error", {}).get("code")
        if code == "conflict" and request.method == "POST":
            e.message += f" (jeisson events modify {args.id} changes it)"
        elif code == "not-found" and request.method != "POST":
            e.message += " (jeisson events list shows the events)"
        raise
    return _show(args, out, body, lambda: render.verdict_text(body, args.id))


def _events_add(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    return _verdict(args, api, add_request(args, time.time()), out)


def _events_modify(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    return _verdict(args, api, modify_request(args, time.time()), out)


def _events_cancel(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    return _verdict(args, api, cancel_request(args.id), out)


def _why(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    body = api.json(why_request(args.home, args.load, args.at, time.time()))
    return _show(args, out, body, lambda: render.why_text(body))


def _export(args: argparse.Namespace, api: Api, out: TextIO) -> int:
    now = time.time()
    # Absolute times, so that every page asks the same range.
    since = format_utc(parse_moment(checked_moment("--since", args.since, now), now))
    until = format_utc(parse_moment(checked_moment("--until", args.until, now), now))
    as_csv = not args.json

    def fetch(since: str, until: str, homes: Sequence[str]) -> export.Page:
        request = export_request(since, until, homes, as_csv, now)
        what = f"{request.method} {request.target(api.target.prefix)}"
        reply = api.call(request)
        if not as_csv:
            return export.json_page(json_of(reply, what))
        if "csv" not in reply.content_type:
            raise ServerFailed(f"{what}: answered {reply.content_type or 'no type'}, not text/csv")
        return export.csv_page(reply.body.decode("utf-8", "replace"), reply.header("X-Truncated") == "true")

    def all_homes() -> list[str]:
        return [home["id"] for home in _list(api.json(homes_request(False)), "homes")]

    header, rows = None, []
    for page in export.pages(fetch, since, until, args.home, all_homes):
        header = header or page.header
        rows += page.rows
    if as_csv:
        text = "".join(f"{line}\r\n" for line in [header or "home,at,watts,span_s"] + [r.item for r in rows])
    else:
        text = json.dumps({"samples": [r.item for r in rows]}, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        _write_file(args.output, text)
        out.write(f"wrote {len(rows)} samples from {since} to {until} to {args.output}\n")
    else:
        out.write(text)
    return 0


def _write_file(path: str, text: str) -> None:
    """``text`` in ``path``, whole or not at all."""
    partial = f"{path}.part"
    try:
        with open(partial, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(partial, path)
    except OSError as e:
        raise UsageProblem(f"-o {path}: cannot write it: {e.strerror or e}") from None


def _list(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = body.get(key)
    if not isinstance(value, list):
        raise ServerFailed(f"the API's answer has no {key!r} list")
    return value


# The parsers.


def _runs(command: Callable[[argparse.Namespace, Api, TextIO], int], name: str) -> Command:
    """A command as ``jeisson.cli`` runs it: its errors said on stderr in
    one line (with ``--json``, the API's error body also on ``out``), and
    the exit status they carry."""

    def run(args: argparse.Namespace, out: TextIO) -> int:
        args.json = _option(args, "json")
        try:
            return command(args, api_from(args, os.environ, sys.stderr), out)
        except ClientError as e:
            if _option(args, "json") and e.body is not None:
                _print_json(e.body, out)
            sys.stderr.write(f"jeisson {name}: {e.message}\n")
            return e.exit_code

    return run


def finite_float(text: str) -> float:
    """An option's number: finite (``nan`` and ``inf`` are refused here,
    exit 2, rather than sent for the API to refuse)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (``--timeout``)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def _connection_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """``--api``, the credentials, ``--timeout`` and ``--json``; with
    ``suppress``, an option not given sets nothing (after a command's name:
    what was given before it stands)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("the API and its credentials")
    group.add_argument("--api", metavar="URL", default=default(None),
                       help=f"the aggregator's API (default $JEISSON_API, else {DEFAULT_API})")
    group.add_argument("--token-file", metavar="FILE", default=default(None),
                       help="a bearer token's file (jeisson pki token); default $JEISSON_TOKEN")
    group.add_argument("--cert", metavar="FILE", default=default(None),
                       help="an operator's client certificate (https only)")
    group.add_argument("--key", metavar="FILE", default=default(None), help="its key")
    group.add_argument("--ca", metavar="FILE", default=default(None),
                       help="the CA that signed the API's certificate (https only)")
    group.add_argument("--timeout", type=positive_float, default=default(DEFAULT_TIMEOUT_S), metavar="S",
                       help=f"seconds to wait for the API (default {DEFAULT_TIMEOUT_S:g})")
    group.add_argument("--json", action="store_true", default=default(False),
                       help="print the API's JSON as it came (for scripts)")


def add_global_options(top: argparse.ArgumentParser) -> None:
    """The connection options before the command's name too, as
    ``jeisson [--api URL] [--json] ... COMMAND`` (``jeisson.cli.parser``
    calls this); the commands take them after their name either way."""
    _connection_options(top, suppress=False)


def _option(args: argparse.Namespace, name: str) -> Any:
    """An option's value, given before or after the command's name, or its default."""
    defaults = {"timeout": DEFAULT_TIMEOUT_S, "json": False}
    return getattr(args, name, defaults.get(name))


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``status``, ``homes``, ``events``, ``why`` and ``export`` to the ``jeisson`` command."""
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, suppress=True)
    epilog = ("exit status: 0 done, 1 the API said no, 2 usage, 3 the API cannot be reached, 4 the API failed. "
              f"Times: {FORMS}.")

    def command(parent: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, full_name: str,
                run: Callable[[argparse.Namespace, Api, TextIO], int], help: str) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, parents=[common], help=help, description=help, epilog=epilog)
        parser.set_defaults(run=_runs(run, full_name))
        return parser

    command(commands, "status", "status", _status,
            "the limit in force against what is committed and measured, the events' countdowns, the last round")
    homes = command(commands, "homes", "homes", _homes,
                    "each home: link, demand, budget, committed and measured power, loads on and off")
    homes.add_argument("--connected", action="store_true", help="only the homes connected now")

    events = commands.add_parser("events", help="list, add, modify and cancel DR events",
                                 description="DR events: each is durable at the aggregator before it answers.")
    sub = events.add_subparsers(dest="events_command", metavar="COMMAND", required=True)
    listing = command(sub, "list", "events list", _events_list, "the events, with their countdowns")
    listing.add_argument("--state", choices=STATES, help="only the events in this state")

    def event_options(parser: argparse.ArgumentParser, required: bool) -> None:
        parser.add_argument("id", metavar="ID", help="the event's id")
        parser.add_argument("--limit-kw", type=finite_float, required=required, metavar="KW",
                            help="the capacity limit, kW")
        parser.add_argument("--start", required=required, metavar="T", help="when it starts")
        parser.add_argument("--end", required=required, metavar="T", help="when it ends")
        parser.add_argument("--start-window-s", type=finite_float, metavar="S",
                            help="spread the homes' start over this many seconds")
        parser.add_argument("--end-window-s", type=finite_float, metavar="S",
                            help="spread the homes' release over this many seconds")

    event_options(command(sub, "add", "events add", _events_add, "add an event"), required=True)
    event_options(command(sub, "modify", "events modify", _events_modify,
                          "change an event (a new version): only the options given"), required=False)
    cancel = command(sub, "cancel", "events cancel", _events_cancel, "cancel an event")
    cancel.add_argument("id", metavar="ID", help="the event's id")

    why = command(commands, "why", "why", _why, "why a load is on or off: the chain from the aggregator's journal")
    why.add_argument("home", metavar="HOME")
    why.add_argument("load", metavar="LOAD")
    why.add_argument("--at", metavar="T", help="the moment asked about (default now)")

    export = command(commands, "export", "export", _export,
                     "the homes' measurements as CSV (--json: the API's JSON)")
    export.add_argument("--since", required=True, metavar="T", help="from this time")
    export.add_argument("--until", metavar="T", help="to this time (default now)")
    export.add_argument("--home", action="append", default=[], metavar="ID", help="only this home (repeat)")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of the standard output")
