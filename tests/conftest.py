import os

import pytest
from hypothesis import HealthCheck, settings
from twisted.logger import capturedLogs, formatEvent

# No per-example deadline: CI machines stall now and then, and a slow example
# is not a wrong one.  CI runs a modest, reproducible number of examples.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def logs():
    """Every test's log; a failure logged anywhere (an exception in a Deferred chain) fails the test.

    Modules that want it for every test say ``pytestmark = pytest.mark.usefixtures("logs")``.
    """
    with capturedLogs() as events:
        yield events
    failures = [formatEvent(e) for e in events if "log_failure" in e]
    assert not failures, failures


class Credentials:
    """A credentials folder made with ``jeisson.pki`` (``jeisson pki init``),
    issuing homes' certificates and boards' keys on demand, and the ``[tls]``
    sections that use them (absolute paths, so any ini file can carry them).

    Shared by a whole session: a test that revokes makes its own folder.
    """

    def __init__(self, directory: str):
        from jeisson import pki

        self.pki = pki
        self.directory = directory
        pki.init(directory)
        pki.issue_manhole(directory)
        self.ca = os.path.join(directory, pki.CA_CERT)
        self.manhole = os.path.join(directory, pki.MANHOLE)

    def home(self, home_id: str) -> tuple[str, str]:
        """``(certificate, key)`` of a home, issued the first time."""
        cert, key = self.pki.home_paths(self.directory, home_id)
        if not os.path.exists(cert):
            self.pki.issue_home(self.directory, home_id)
        return cert, key

    def board(self, board_id: str) -> str:
        """The path of a board's key, made the first time."""
        path = self.pki.board_key_path(self.directory, board_id)
        if not os.path.exists(path):
            self.pki.issue_board(self.directory, board_id)
        return path

    def aggregator_tls(self, crl_poll_s: float | None = None) -> str:
        d = self.directory
        text = (f"\n[tls]\nca = {self.ca}\ncert = {d}/aggregator.pem\nkey = {d}/aggregator.key\n"
                f"crl = {d}/crl.pem\n")
        return text + (f"crl_poll_s = {crl_poll_s}\n" if crl_poll_s is not None else "")

    def home_tls(self, home_id: str, name: str | None = None) -> str:
        cert, key = self.home(home_id)
        return f"\n[tls]\nca = {self.ca}\ncert = {cert}\nkey = {key}\n" + (f"name = {name}\n" if name else "")


@pytest.fixture(scope="session")
def credentials(tmp_path_factory) -> Credentials:
    """One credentials folder for the session (see ``Credentials``)."""
    return Credentials(str(tmp_path_factory.mktemp("pki") / "pki"))
