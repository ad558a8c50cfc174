"""What a TLS connection holds at the server: ``python bench/tls_memory.py --connections N``.

One server process per kind, N idle connections to it from a client
process, and the server's RSS before the first connection and with all N
connected (each connection has finished its handshake and sent one line,
which the server has read):

``plain``
    bare Twisted over TCP (a ``LineReceiver``): the baseline.
``twisted``
    bare Twisted over mutual TLS as Twisted sets it up
    (``CertificateOptions(verify=True, requireCertificate=True)``).
``jeisson``
    the same bare ``LineReceiver`` behind jeisson's server TLS
    (``jeisson.tls.ServerTLS``: the aggregator's context, its revocation
    list checked, ``HomeTLSProtocol``).
``jeisson-keep-buffers``
    the same, with OpenSSL's ``MODE_RELEASE_BUFFERS`` cleared: what that
    setting of ``ServerTLS`` saves (an idle connection gives its record
    buffers back).
``jeisson-p256``, ``jeisson-tls12`` (only when asked: ``--kinds``)
    what two cuts not taken would save: key exchange on P-256 alone
    (OpenSSL's default offers the post-quantum hybrid X25519MLKEM768 first,
    whose client key share the server keeps for the connection's life), and
    TLS 1.2 only.

Each kind's RSS per connection is given twice: as the kernel counts it
(what the process holds), and after ``malloc_trim(0)`` (the handshakes'
scratch memory, freed but kept by the allocator, given back: what each
connection itself keeps).  What jeisson adds above the bare TLS connection
per home (its ``LineLink``, session and home record) is
``bench/round_latency.py --tls``'s figure less this one.

The module also holds what the TLS benches share (``fleet_credentials``,
the bare Twisted options, the homes' endpoints): ``bench/round_latency.py``
and ``bench/reconnect_storm.py`` import it.

Last line: ``connections=N plain_kib=... twisted_kib=... jeisson_kib=...
jeisson-keep-buffers_kib=...`` (per connection, after ``malloc_trim``) and
the same untrimmed.
"""

import argparse
import ctypes
import json
import os
import pathlib
import select
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve()
KINDS = ("plain", "twisted", "jeisson", "jeisson-keep-buffers", "jeisson-p256", "jeisson-tls12")
DEFAULT_KINDS = ("plain", "twisted", "jeisson", "jeisson-keep-buffers")


# ------------------------------------------------------- shared helpers


def fleet_credentials(folder: str, home_ids: list[str]) -> None:
    """A CA, the aggregator's certificate (``localhost``, ``127.0.0.1``), an
    empty revocation list and a client certificate per home, in
    ``jeisson pki``'s layout under ``folder``; what is there already is kept."""
    from jeisson import pki

    if not os.path.exists(os.path.join(folder, pki.CA_CERT)):
        pki.init(folder)
    for hid in home_ids:
        if not os.path.exists(pki.home_paths(folder, hid)[0]):
            pki.issue_home(folder, hid)


def server_tls_config(folder: str) -> Any:
    """The aggregator's ``[tls]`` for ``fleet_credentials``' folder."""
    from jeisson import pki, tls

    return tls.TLSConfig(os.path.join(folder, "bench.ini"), ca=os.path.join(folder, pki.CA_CERT),
                         cert=os.path.join(folder, pki.AGGREGATOR_CERT),
                         key=os.path.join(folder, pki.AGGREGATOR_KEY), crl=os.path.join(folder, pki.CRL))


def home_tls(folder: str, hid: str) -> tuple[Any, Any]:
    """A home's ``[tls]`` (the aggregator named ``localhost``) and its
    loaded, checked credentials."""
    from jeisson import pki, tls

    cert, key = pki.home_paths(folder, hid)
    config = tls.TLSConfig(os.path.join(folder, "bench.ini"), ca=os.path.join(folder, pki.CA_CERT), cert=cert,
                           key=key, name="localhost")
    return config, tls.load_client(config, hid)


def bare_server_options(folder: str) -> Any:
    """Twisted's own mutual TLS for the server: the aggregator's certificate,
    a client certificate required and verified against the CA."""
    from twisted.internet import ssl

    from jeisson import pki

    def read(name: str) -> bytes:
        return pathlib.Path(folder, name).read_bytes()

    return ssl.PrivateCertificate.loadPEM(read(pki.AGGREGATOR_CERT) + read(pki.AGGREGATOR_KEY)).options(
        ssl.Certificate.loadPEM(read(pki.CA_CERT)))


def bare_client_options(folder: str, hid: str) -> Any:
    """Twisted's own client TLS with ``hid``'s certificate, verifying the
    aggregator's (``localhost``) against the CA."""
    from twisted.internet import ssl

    from jeisson import pki

    cert, key = pki.home_paths(folder, hid)
    return ssl.optionsForClientTLS(
        "localhost", trustRoot=ssl.Certificate.loadPEM(pathlib.Path(folder, pki.CA_CERT).read_bytes()),
        clientCertificate=ssl.PrivateCertificate.loadPEM(pathlib.Path(cert).read_bytes()
                                                         + pathlib.Path(key).read_bytes()))


def rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for {pid}")


def malloc_trim() -> None:
    """Give the allocator's free memory back to the kernel (glibc)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def read_json_line(process: subprocess.Popen[str], seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    assert process.stdout is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([process.stdout], [], [], left)[0]:
            raise SystemExit(f"{process.args!r} said nothing within {seconds} s")
        line = process.stdout.readline()
        if not line:
            raise SystemExit(f"{process.args!r} ended: {process.poll()}")
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result


def start_in_batches(reactor: Any, count: int, start: Any, size: int = 100, pause: float = 0.05) -> None:
    # In batches: the server's accept backlog never overflows.
    def batch(at: int) -> None:
        for i in range(at, min(at + size, count)):
            start(i)
        if at + size < count:
            reactor.callLater(pause, batch, at + size)

    reactor.callWhenRunning(batch, 0)


# ------------------------------------------------------- the processes


def run_server(kind: str, folder: str, connections: int) -> None:
    """Listen on a free port (said on standard output), count each
    connection's first line; once all have sent theirs, trim and say so;
    stop when standard input closes."""
    from twisted.internet import protocol, stdio
    from twisted.internet import reactor as _reactor
    from twisted.protocols.basic import LineReceiver

    reactor: Any = _reactor  # listenSSL: the reactor's, which its stubs leave out
    lines = [0]

    class Idle(LineReceiver):
        def lineReceived(self, line: bytes) -> None:  # noqa: N802 (Twisted)
            lines[0] += 1
            if lines[0] == connections:
                reactor.callLater(0.5, ready)

    def ready() -> None:
        untrimmed = rss_kib(os.getpid())
        malloc_trim()
        print(json.dumps({"untrimmed": untrimmed, "trimmed": rss_kib(os.getpid())}), flush=True)

    class Stop(protocol.Protocol):
        def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 (Twisted)
            reactor.stop()

    factory: Any = protocol.Factory.forProtocol(Idle)
    if kind == "plain":
        port = reactor.listenTCP(0, factory, backlog=4096, interface="127.0.0.1")
    elif kind == "twisted":
        port = reactor.listenSSL(0, factory, bare_server_options(folder), backlog=4096, interface="127.0.0.1")
    else:
        from cryptography.hazmat.primitives.asymmetric import ec
        from OpenSSL import SSL

        from jeisson import tls

        server = tls.ServerTLS(server_tls_config(folder))
        context: Any = server._context  # the variants below measure what a setting costs
        if kind == "jeisson-keep-buffers":
            context.clear_mode(SSL.MODE_RELEASE_BUFFERS)
        elif kind == "jeisson-p256":
            context.set_tmp_ecdh(ec.SECP256R1())  # OpenSSL 3+: the groups offered, P-256 alone
        elif kind == "jeisson-tls12":
            context.set_max_proto_version(SSL.TLS1_2_VERSION)
        wrapped: Any = server.wrap(factory)
        port = reactor.listenTCP(0, wrapped, backlog=4096,
                                 interface="127.0.0.1")

    def started() -> None:
        malloc_trim()
        print(json.dumps({"port": port.getHost().port, "rss": rss_kib(os.getpid())}), flush=True)

    stdio.StandardIO(Stop())
    reactor.callWhenRunning(started)
    reactor.run()


def run_clients(kind: str, folder: str, port: int, connections: int) -> None:
    from twisted.internet import endpoints, protocol, reactor, stdio
    from twisted.protocols.basic import LineReceiver

    class Hello(LineReceiver):
        def connectionMade(self) -> None:  # noqa: N802 (Twisted)
            self.sendLine(b"HELLO")

    class Stop(protocol.Protocol):
        def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 (Twisted)
            reactor.stop()

    factory = protocol.Factory.forProtocol(Hello)
    options = None if kind == "plain" else bare_client_options(folder, "h00000")

    def start(_: int) -> None:
        endpoint: Any = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=60)
        if options is not None:
            endpoint = endpoints.wrapClientTLS(options, endpoint)
        endpoint.connect(factory)

    stdio.StandardIO(Stop())
    start_in_batches(reactor, connections, start)
    reactor.run()


def measure(kind: str, folder: str, connections: int) -> tuple[float, float]:
    """(KiB per connection untrimmed, after malloc_trim) for ``kind``."""
    server = subprocess.Popen([sys.executable, str(HERE), "--server", kind, folder, str(connections)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    clients = None
    try:
        up = read_json_line(server, 60)
        clients = subprocess.Popen([sys.executable, str(HERE), "--clients", kind, folder, str(up["port"]),
                                    str(connections)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        done = read_json_line(server, 600)
        return ((done["untrimmed"] - up["rss"]) / connections, (done["trimmed"] - up["rss"]) / connections)
    finally:
        for process in (clients, server):
            if process is not None:
                process.kill()
                process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS), help="comma-separated, of: " + ", ".join(KINDS))
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    for kind in kinds:
        if kind not in KINDS:
            raise SystemExit(f"--kinds: unknown kind {kind!r}: one of {', '.join(KINDS)}")
    with tempfile.TemporaryDirectory(prefix="jeisson-tls-memory-") as folder:
        fleet_credentials(folder, ["h00000"])
        results = {}
        for kind in kinds:
            untrimmed, trimmed = measure(kind, folder, args.connections)
            results[kind] = (untrimmed, trimmed)
            print(f"{kind}: {untrimmed:.1f} KiB per connection as held, {trimmed:.1f} KiB after malloc_trim",
                  flush=True)
    print(f"connections={args.connections} "
          + " ".join(f"{kind}_kib={results[kind][1]:.1f}" for kind in kinds) + " "
          + " ".join(f"{kind}_untrimmed_kib={results[kind][0]:.1f}" for kind in kinds))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--server":
        run_server(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--clients":
        run_clients(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
