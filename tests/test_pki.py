"""``jeisson pki``: the credentials folder, as the other parts read it."""

import datetime
import io
import os
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.conch.ssh import keys

from jeisson import cli, pki


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def folder(tmp_path):
    directory = str(tmp_path / "pki")
    pki.init(directory)
    return directory


def test_init_makes_a_ca_a_crl_and_the_aggregator_certificate_with_private_keys_0600(folder):
    ca = pki.load_certificate(os.path.join(folder, "ca.pem"))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aggregator = pki.load_certificate(os.path.join(folder, "aggregator.pem"))
    aggregator.verify_directly_issued_by(ca)
    san = aggregator.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in aggregator.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    for key in ("ca.key", "aggregator.key"):
        assert mode(os.path.join(folder, key)) == 0o600
        assert open(os.path.join(folder, key)).read().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    crl = pki.load_crl(os.path.join(folder, "crl.pem"))
    assert crl.is_signature_valid(ca.public_key()) and len(crl) == 0


def test_init_takes_the_aggregator_names(tmp_path):
    directory = str(tmp_path / "pki")
    pki.init(directory, dns=["agg.example.net"], ips=["192.0.2.7", "::1"])
    san = pki.load_certificate(os.path.join(directory, "aggregator.pem")).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["agg.example.net"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.7", "::1"]


@pytest.mark.parametrize("dns, ips, error", [(["bad name!"], [], "--dns 'bad name!'"), ([], ["300.1.1.1"], "--ip")])
def test_init_refuses_bad_names(tmp_path, dns, ips, error):
    with pytest.raises(pki.PKIError, match=error):
        pki.init(str(tmp_path / "pki"), dns=dns, ips=ips)
    assert not os.path.exists(tmp_path / "pki" / "ca.key")


def test_nothing_is_overwritten_without_force(folder):
    before = open(os.path.join(folder, "ca.pem")).read()
    with pytest.raises(pki.PKIError, match=r"ca\.pem exists: not replacing it \(--force"):
        pki.init(folder)
    assert open(os.path.join(folder, "ca.pem")).read() == before
    pki.issue_home(folder, "home-1")
    with pytest.raises(pki.PKIError, match=r"homes/home-1\.pem exists"):
        pki.issue_home(folder, "home-1")
    pki.issue_board(folder, "b1")
    with pytest.raises(pki.PKIError, match=r"boards/b1\.key exists"):
        pki.issue_board(folder, "b1")
    pki.init(folder, force=True)
    assert open(os.path.join(folder, "ca.pem")).read() != before


def test_a_home_certificate_names_the_home_for_client_auth(folder):
    cert_path, key_path = pki.issue_home(folder, "home-7")
    cert = pki.load_certificate(cert_path)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "home-7"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["jeisson:home:home-7"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.verify_directly_issued_by(pki.load_certificate(os.path.join(folder, "ca.pem")))
    assert pki.load_private_key(key_path).public_key() == cert.public_key()
    assert mode(key_path) == 0o600
    assert pki.home_id_of(cert) == "home-7"


def test_ids_are_checked_and_a_home_needs_a_ca(tmp_path, folder):
    with pytest.raises(pki.PKIError, match="is not a home id"):
        pki.issue_home(folder, "../evil")
    with pytest.raises(pki.PKIError, match="is not a board id"):
        pki.issue_board(folder, "a-board-id-far-too-long")
    with pytest.raises(pki.PKIError, match=r"ca\.pem: no such file: make the CA first \(jeisson pki init"):
        pki.issue_home(str(tmp_path / "empty"), "home-1")


def test_a_board_key_is_64_hex_digits_0600_and_new_each_time(folder):
    (path,) = pki.issue_board(folder, "home-1-a")
    assert path == os.path.join(folder, "boards", "home-1-a.key")
    text = open(path).read()
    assert len(text) == 65 and text.endswith("\n") and text[:-1] == text[:-1].lower()
    assert len(pki.read_board_key(path)) == 32
    assert mode(path) == 0o600
    (other,) = pki.issue_board(folder, "home-1-b")
    assert open(other).read() != text


def test_manhole_keys_are_openssh_keys_and_the_operator_is_authorized(folder):
    pki.issue_manhole(folder)
    manhole = os.path.join(folder, "manhole")
    host = keys.Key.fromFile(os.path.join(manhole, "ssh_host_ed25519_key"))
    assert host.isPublic() is False and host.type() == "Ed25519"
    operator = keys.Key.fromFile(os.path.join(manhole, "operator_ed25519"))
    authorized = keys.Key.fromString(open(os.path.join(manhole, "authorized_keys")).read().strip())
    assert authorized == operator.public()
    assert keys.Key.fromFile(os.path.join(manhole, "operator_ed25519.pub")) == operator.public()
    for private in ("ssh_host_ed25519_key", "operator_ed25519"):
        assert mode(os.path.join(manhole, private)) == 0o600
    with pytest.raises(pki.PKIError, match="exists"):
        pki.issue_manhole(folder)


def test_revoking_a_home_lists_its_serial_on_a_new_signed_crl(folder):
    pki.issue_home(folder, "home-1")
    pki.issue_home(folder, "home-2")
    serial = pki.revoke_home(folder, "home-1")
    crl = pki.load_crl(os.path.join(folder, "crl.pem"))
    ca = pki.load_certificate(os.path.join(folder, "ca.pem"))
    assert crl.is_signature_valid(ca.public_key())
    assert [e.serial_number for e in crl] == [serial]
    first = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    pki.revoke_home(folder, "home-2")
    crl = pki.load_crl(os.path.join(folder, "crl.pem"))
    assert len(crl) == 2 and crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == first + 1
    listed = {item.name: item for item in pki.list_credentials(folder) if item.kind == "home"}
    assert listed["home-1"].revoked is not None and listed["home-2"].revoked is not None
    with pytest.raises(pki.PKIError, match="no certificate was issued to home 'home-9'"):
        pki.revoke_home(folder, "home-9")


def test_list_shows_everything_with_expiry(folder):
    pki.issue_home(folder, "home-1", not_before=pki.now() - datetime.timedelta(days=10),
                   not_after=pki.now() - datetime.timedelta(days=1))
    pki.issue_board(folder, "b1")
    pki.issue_manhole(folder)
    out = io.StringIO()
    assert cli.main(["pki", "list", folder], out=out) == 0
    text = out.getvalue()
    for kind in ("ca", "aggregator", "crl", "home", "board", "manhole-host", "manhole-operator"):
        assert any(line.startswith(kind + " ") for line in text.splitlines()), (kind, text)
    assert "EXPIRED" in next(line for line in text.splitlines() if line.startswith("home "))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "jeisson.cli", *args], capture_output=True, text=True, timeout=60)


def test_the_command_exits_0_1_or_2(tmp_path):
    directory = str(tmp_path / "pki")
    done = run_cli("pki", "init", directory, "--dns", "localhost", "--ip", "127.0.0.1")
    assert done.returncode == 0, done.stderr
    assert f"wrote {directory}/ca.pem" in done.stdout
    again = run_cli("pki", "init", directory)
    assert again.returncode == 1
    assert again.stderr.strip() == f"jeisson pki: {directory}/ca.pem exists: not replacing it (--force replaces it)"
    usage = run_cli("pki", "home", directory)
    assert usage.returncode == 2 and "HOME-ID" in usage.stderr
    assert run_cli().returncode == 2
    assert run_cli("pki", "home", directory, "home-1").returncode == 0
    assert run_cli("pki", "revoke", directory, "home-1").returncode == 0
    listed = run_cli("pki", "list", directory)
    assert listed.returncode == 0 and "REVOKED" in listed.stdout


def test_the_aggregator_certificate_is_renewed_from_the_same_ca(folder):
    ca = pki.load_certificate(os.path.join(folder, "ca.pem"))
    with pytest.raises(pki.PKIError, match=r"aggregator\.pem exists"):
        pki.issue_aggregator(folder, dns=["agg.example.net"])
    out = io.StringIO()
    assert cli.main(["pki", "aggregator", folder, "--dns", "agg.example.net", "--force"], out=out) == 0
    cert = pki.load_certificate(os.path.join(folder, "aggregator.pem"))
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["agg.example.net"]
    assert pki.load_private_key(os.path.join(folder, "aggregator.key")).public_key() == cert.public_key()


# ----------------------------------------------------- the HTTP API's credentials


def test_an_operator_certificate_names_the_operator_for_client_auth_and_no_home(folder):
    written = pki.issue_operator(folder, "alice")
    assert written == [os.path.join(folder, "operators", "alice.pem"), os.path.join(folder, "operators", "alice.key")]
    cert = pki.load_certificate(written[0])
    cert.verify_directly_issued_by(pki.load_certificate(os.path.join(folder, "ca.pem")))
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert pki.operator_of(cert) == "alice"
    assert pki.home_id_of(cert) is None, "an operator is no home, not even by its CN"
    assert mode(written[1]) == 0o600
    # Named like a home, still no home: the homes' listener takes it for none.
    named_like_a_home = pki.load_certificate(pki.issue_operator(folder, "home-1")[0])
    assert pki.home_id_of(named_like_a_home) is None and pki.operator_of(named_like_a_home) == "home-1"
    home_cert = pki.load_certificate(pki.issue_home(folder, "home-1")[0])
    assert pki.operator_of(home_cert) is None and pki.home_id_of(home_cert) == "home-1"
    with pytest.raises(pki.PKIError, match="exists"):
        pki.issue_operator(folder, "alice")
    with pytest.raises(pki.PKIError, match="is not an operator id"):
        pki.issue_operator(folder, "al ice")


def test_a_token_is_printed_once_and_only_its_hash_is_kept(folder):
    token, path = pki.issue_token(folder, "grafana")
    assert token.startswith(pki.TOKEN_PREFIX) and len(token) > 40
    assert path == os.path.join(folder, "api-tokens") and mode(path) == 0o600
    text = open(path).read()
    assert token not in text
    assert pki.read_tokens(path) == [(pki.token_hash(token), "grafana")]
    second, _ = pki.issue_token(folder, "cli")
    assert second != token
    assert [name for _, name in pki.read_tokens(path)] == ["grafana", "cli"]
    with pytest.raises(pki.PKIError, match="a token named 'cli' exists"):
        pki.issue_token(folder, "cli")
    with open(path, "a") as f:
        f.write("# a comment\n\nnot-a-hash someone\n")
    with pytest.raises(pki.PKIError, match="line 5"):
        pki.read_tokens(path)


def test_the_command_makes_operators_and_tokens(folder):
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["pki", "operator", folder, "alice"], out, err) == 0, err.getvalue()
    assert "operators/alice.pem" in out.getvalue()
    out = io.StringIO()
    assert cli.main(["pki", "token", folder, "cli"], out, err) == 0, err.getvalue()
    token = out.getvalue().splitlines()[0]
    assert pki.read_tokens(os.path.join(folder, "api-tokens")) == [(pki.token_hash(token), "cli")]
    assert "shown once" in out.getvalue()
    err = io.StringIO()
    assert cli.main(["pki", "token", folder, "cli"], io.StringIO(), err) == 1
    assert "exists" in err.getvalue()
    listed = io.StringIO()
    assert cli.main(["pki", "list", folder], listed, io.StringIO()) == 0
    assert "operator" in listed.getvalue() and "api-token" in listed.getvalue()


def test_an_operator_is_revoked_on_the_same_list_as_homes(folder):
    pki.issue_operator(folder, "mallory")
    serial = pki.revoke_operator(folder, "mallory")
    assert serial in {entry.serial_number for entry in pki.load_crl(os.path.join(folder, "crl.pem"))}
    with pytest.raises(pki.PKIError, match="no certificate was issued to operator 'nobody'"):
        pki.revoke_operator(folder, "nobody")
    pki.issue_operator(folder, "eve")
    out = io.StringIO()
    assert cli.main(["pki", "revoke", folder, "eve", "--operator"], out, io.StringIO()) == 0
    assert "revoked operator eve" in out.getvalue()
    listed = {item.name: item.revoked for item in pki.list_credentials(folder) if item.kind == "operator"}
    assert listed["eve"] is not None and listed["mallory"] is not None
