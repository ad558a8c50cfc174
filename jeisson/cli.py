"""The ``jeisson`` command: tools beside the twistd plugins.

::

    jeisson pki init DIR [--dns NAME]... [--ip IP]... [--force]
    jeisson pki aggregator DIR [--dns NAME]... [--ip IP]... [--force] [--days N]
    jeisson pki home DIR HOME-ID [--force] [--days N]
    jeisson pki board DIR BOARD-ID [--force]
    jeisson pki operator DIR NAME [--force] [--days N]
    jeisson pki web DIR NAME [--dns NAME]... [--ip IP]... [--force] [--days N]
    jeisson pki token DIR NAME
    jeisson pki manhole DIR [--force]
    jeisson pki revoke DIR HOME-ID [--operator]
    jeisson pki list DIR

Exit status: 0 done, 1 failed (one line on stderr says why), 2 usage.

Each command group is a function that adds its subparsers (``_add_pki``)
and each command a function ``(args, out) -> int``, so that others
(``jeisson status``, ``jeisson events ...``) are added the same way.
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

# jeisson.pki (cryptography: ~120 ms of imports) is imported by the pki
# commands only, so that ``jeisson status`` and the API's other commands
# start without it.

Command = Callable[[argparse.Namespace, TextIO], int]
CERT_DAYS = 825  # jeisson.pki.CERT_DAYS, for --days's default without importing it (a test keeps them equal)


class CommandRefused(Exception):
    """A command's refusal: one line on stderr, exit 1."""


def _pki_command(run: Command) -> Command:
    """``run`` with jeisson.pki's refusals (``PKIError``) as ``CommandRefused``."""

    def command(args: argparse.Namespace, out: TextIO) -> int:
        from jeisson import pki

        try:
            return run(args, out)
        except pki.PKIError as e:
            raise CommandRefused(str(e)) from e

    return command


def _written(paths: Sequence[str], out: TextIO) -> None:
    for path in paths:
        out.write(f"wrote {path}\n")


def _pki_init(args: argparse.Namespace, out: TextIO) -> int:
    from jeisson import pki

    _written(pki.init(args.dir, args.dns, args.ip, force=args.force), out)
    out.write(f"next: jeisson pki home {args.dir} HOME-ID for each home\n")
    return 0


def _pki_aggregator(args: argparse.Namespace, out: TextIO) -> int:
    from jeisson import pki

    _written(pki.issue_aggregator(args.dir, args.dns, args.ip, force=args.force, days=args.days), out)
    return 0


def _pki_home(args: argparse.Namespace, out: TextIO) -> int:
    from jeisson import pki

    _written(pki.issue_home(args.dir, args.home_id, force=args.force, days=args.days), out)
    return 0


def _pki_operator(args: argparse.Namespace, out: TextIO) -> int:
    from jeisson import pki

    cert, key = pki.issue_operator(args.dir, args.name, force=args.force, days=args.days)
    _written([cert, key], out)
    out.write(f"for the HTTP API ([api] tls = yes): jeisson --cert {cert} --key {key} --ca "
              f"{args.dir}/{pki.CA_CERT} --api https://HOST:8480 status\n")
    return 0


def _pki_web(args: argparse.Namespace, out: TextIO) -> int:
    from jeisson import pki

    cert, key = pki.issue_web(args.dir, args.name, args.dns, args.ip, force=args.force, days=args.days)
    _written([cert, key], out)
    out.write(f"for an HTTPS API (a home's): [api] tls = yes, cert = {cert}, key = {key}\n")
    return 0


def _pki_token(args: argparse.Namespace, out: TextIO) -> int:
    from jeisson import pki

    token, path = pki.issue_token(args.dir, args.name)
    out.write(f"{token}\n")
    out.write(f"# token {args.name!r}: its SHA-256 appended to {path} ([api] tokens = {path}); the token above is "
              "shown once and kept nowhere: put it in a file only its user reads (jeisson --token-file FILE)\n")
    return 0


def _pki_board(args: argparse.Namespace, out: TextIO) -> int:
    from jeisson import pki

    _written(pki.issue_board(args.dir, args.board_id, force=args.force), out)
    out.write("give this file to the board and to its home ([actuator] key = ... on both)\n")
    return 0


def _pki_manhole(args: argparse.Namespace, out: TextIO) -> int:
    from jeisson import pki

    _written(pki.issue_manhole(args.dir, force=args.force), out)
    return 0


def _pki_revoke(args: argparse.Namespace, out: TextIO) -> int:
    from jeisson import pki

    if args.operator:
        serial = pki.revoke_operator(args.dir, args.home_id)
        out.write(f"revoked operator {args.home_id} (serial {serial:x}) in {args.dir}/{pki.CRL}; running aggregators' "
                  "APIs refuse it within their [tls] crl_poll_s\n")
        return 0
    serial = pki.revoke_home(args.dir, args.home_id)
    out.write(f"revoked home {args.home_id} (serial {serial:x}) in {args.dir}/{pki.CRL}; running aggregators "
              "drop it within their [tls] crl_poll_s\n")
    return 0


def _pki_list(args: argparse.Namespace, out: TextIO) -> int:
    from jeisson import pki

    for item in pki.list_credentials(args.dir):
        line = f"{item.kind:<17} {item.name:<32}"
        if item.not_after is not None:
            line += f" until {item.not_after:%Y-%m-%d %H:%M}Z"
            if item.not_after <= pki.now():
                line += " EXPIRED"
        if item.revoked is not None:
            line += f" REVOKED since {item.revoked:%Y-%m-%d %H:%M}Z"
        out.write(line.rstrip() + f"  {item.path}\n")
    return 0


def _add_pki(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    group = commands.add_parser("pki", help="make and manage credentials (CA, certificates, board and SSH keys)",
                                description="Make a CA and issue credentials into one folder (docs/security.rst).")
    sub = group.add_subparsers(dest="pki_command", metavar="COMMAND", required=True)

    def command(name: str, run: Command, help: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help, description=help)
        parser.add_argument("dir", metavar="DIR", help="the credentials folder (for example etc/jeisson/pki)")
        parser.set_defaults(run=_pki_command(run))
        return parser

    def names(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dns", action="append", default=[], metavar="NAME",
                            help="a DNS name homes reach the aggregator by (repeat; default localhost and 127.0.0.1)")
        parser.add_argument("--ip", action="append", default=[], metavar="IP",
                            help="an IP address homes reach the aggregator by (repeat)")

    init = command("init", _pki_init, "make the CA, an empty revocation list and the aggregator's certificate")
    names(init)
    init.add_argument("--force", action="store_true", help="replace an existing CA (every issued certificate dies)")
    aggregator = command("aggregator", _pki_aggregator, "issue the aggregator's certificate again from the CA "
                                                        "(renewal, new names)")
    names(aggregator)
    aggregator.add_argument("--days", type=int, default=CERT_DAYS, help=f"validity (default {CERT_DAYS})")
    aggregator.add_argument("--force", action="store_true", help="replace the existing certificate")
    home = command("home", _pki_home, "issue a home's client certificate")
    home.add_argument("home_id", metavar="HOME-ID")
    home.add_argument("--days", type=int, default=CERT_DAYS, help=f"validity (default {CERT_DAYS})")
    home.add_argument("--force", action="store_true", help="replace an existing certificate")
    board = command("board", _pki_board, "make a board's shared key")
    board.add_argument("board_id", metavar="BOARD-ID")
    board.add_argument("--force", action="store_true", help="replace an existing key")
    operator = command("operator", _pki_operator, "issue an operator's client certificate for the HTTP API")
    operator.add_argument("name", metavar="NAME")
    operator.add_argument("--days", type=int, default=CERT_DAYS, help=f"validity (default {CERT_DAYS})")
    operator.add_argument("--force", action="store_true", help="replace an existing certificate")
    web = command("web", _pki_web, "issue a server certificate for an HTTPS API ([api] cert, key: a home's)")
    web.add_argument("name", metavar="NAME")
    names(web)
    web.add_argument("--days", type=int, default=CERT_DAYS, help=f"validity (default {CERT_DAYS})")
    web.add_argument("--force", action="store_true", help="replace an existing certificate")
    token = command("token", _pki_token, "make a bearer token for the HTTP API (printed once; its hash is kept)")
    token.add_argument("name", metavar="NAME")
    manhole = command("manhole", _pki_manhole, "make the manhole's SSH host key and an operator's key pair")
    manhole.add_argument("--force", action="store_true", help="replace existing keys")
    revoke = command("revoke", _pki_revoke, "put a home's (or an operator's) certificate on the revocation list")
    revoke.add_argument("home_id", metavar="HOME-ID")
    revoke.add_argument("--operator", action="store_true", help="HOME-ID names an operator (jeisson pki operator)")
    command("list", _pki_list, "list what the folder holds, with expiry dates")


# Each command group adds its subparsers; a new group (``jeisson status``,
# ``jeisson events ...``) is one more function here.
GROUPS: list[Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]] = [_add_pki]
GROUPS.append(__import__("jeisson.client.commands", fromlist=["add_commands"]).add_commands)  # D: the API's commands


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="jeisson", description="jeisson's tools (the daemons run under twistd).")
    # The API's connection options before any command's name too (jeisson --api URL status).
    __import__("jeisson.client.commands", fromlist=["add_global_options"]).add_global_options(top)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_group in GROUPS:
        add_group(commands)
    return top


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else 2
    run: Command = args.run
    try:
        return run(args, out)
    except CommandRefused as e:
        err.write(f"jeisson {args.command}: {e}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
