"""XML signatures as OpenADR 2.0b wants them, and OpenADR's certificate fingerprints.

An OpenADR payload is signed by a ``ds:Signature``, the first child of
``oadrPayload``, beside the ``oadrSignedObject`` it covers: a detached
signature with two references, ``#oadrSignedObject`` (the message) and the
signature's own ``ReplayProtect`` property (a timestamp and a nonce), both
canonicalised with inclusive C14N 1.0 and digested with SHA-256, signed with
ECDSA-SHA256 or RSA-SHA256 by the key of the certificate carried in
``KeyInfo`` (what OpenLEADR sends and checks).

``sign`` adds one to a rendered payload with this VEN's key; ``verify``
checks one the VTN sent: the certificate in it must be the VTN's (by
OpenADR fingerprint, by a given certificate, or issued by the given CA and
valid now), the digests and signature must hold, and the timestamp must be
recent and its nonce unseen.  ``verify`` returns the message read from
what the signature covers, never from anything beside it.

``fingerprint`` is OpenADR's certificate fingerprint: the last 10 bytes of
the SHA-256 of the DER certificate as upper-case hex pairs joined by colons
(29 characters), as OpenLEADR computes it.  A VTN registers a VEN by it,
and this VEN may pin the VTN's by it (both directions).

Pure: no reactor, no transport; ``now`` is given, the replay memory is an
object the caller keeps.
"""

import base64
import binascii
import datetime
import hashlib
import re
import uuid

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree  # type: ignore[import-untyped]  # no stubs in the venv (types-lxml)
from signxml import methods
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidInput, SignXMLException
from signxml.signer import XMLSigner
from signxml.verifier import XMLVerifier

from jeisson.openadr import messages as m

C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
DEFAULT_MAX_AGE_S = 60.0
FINGERPRINT_PATTERN = re.compile(r"[0-9A-F]{2}(:[0-9A-F]{2}){9}\Z")


class SignatureError(ValueError):
    """A signature that does not hold, or is missing, or is not the VTN's."""


# ------------------------------------------------------------------ fingerprints


def fingerprint(cert: bytes | x509.Certificate) -> str:
    """OpenADR's fingerprint of a certificate (PEM, DER or loaded):
    ``AB:CD:...`` (10 pairs)."""
    if isinstance(cert, x509.Certificate):
        der = cert.public_bytes(serialization.Encoding.DER)
    elif cert.lstrip().startswith(b"-----BEGIN"):
        der = x509.load_pem_x509_certificate(cert).public_bytes(serialization.Encoding.DER)
    else:
        der = cert
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest()[-10:])


def normalize_fingerprint(text: str) -> str:
    """A fingerprint as an operator may type it (lower case, spaces) ->
    OpenADR's form; ``ValueError`` naming what was expected."""
    cleaned = text.strip().upper().replace(" ", "")
    if not FINGERPRINT_PATTERN.match(cleaned):
        raise ValueError(f"{text!r} is not an OpenADR fingerprint (10 hex pairs joined by colons, "
                         "like 1B:8E:CA:E2:59:66:94:AD:37:4D)")
    return cleaned


# ------------------------------------------------------------------ signing


def _signature_method(key: object) -> SignatureMethod:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return SignatureMethod.ECDSA_SHA256
    if isinstance(key, rsa.RSAPrivateKey):
        return SignatureMethod.RSA_SHA256
    raise SignatureError(f"a {type(key).__name__} cannot sign OpenADR messages (EC or RSA keys only)")


def _signing_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except (ValueError, TypeError) as e:
        raise SignatureError(f"the signing key cannot be read ({e})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise SignatureError(f"a {type(key).__name__} cannot sign OpenADR messages (EC or RSA keys only)")
    return key


def _replay_protect(now: float, nonce: str) -> etree._Element:
    protect = etree.Element(f"{{{m.DSP}}}ReplayProtect", nsmap={"dsp": m.DSP})
    etree.SubElement(protect, f"{{{m.DSP}}}timestamp").text = m.format_datetime(now)
    etree.SubElement(protect, f"{{{m.DSP}}}nonce").text = nonce
    return protect


def sign_tree(root: etree._Element, key_pem: bytes, cert_pem: bytes, now: float, nonce: str | None = None) -> None:
    """Sign an ``oadrPayload`` tree in place (``messages.build``)."""
    if root.find(f"{{{m.DS}}}Signature") is not None:
        raise SignatureError("the payload is already signed")
    key = _signing_key(key_pem)
    signer = XMLSigner(method=methods.detached, signature_algorithm=_signature_method(key),
                       digest_algorithm=DigestAlgorithm.SHA256, c14n_algorithm=C14N)
    # Declared on the signature as on the payload, so that its signed
    # property canonicalises the same alone and in place.
    signer.namespaces["oadr"] = m.OADR
    try:
        signature = signer.sign(root, key=key, cert=cert_pem.decode("ascii"),
                                reference_uri=f"#{m.SIGNED_OBJECT_ID}",
                                signature_properties=_replay_protect(now, nonce or uuid.uuid4().hex))
    except (SignXMLException, ValueError) as e:
        raise SignatureError(f"could not sign ({e})") from None
    root.insert(0, signature)


def sign(body: bytes, key_pem: bytes, cert_pem: bytes, now: float, nonce: str | None = None) -> bytes:
    """A rendered payload (``messages.render``) with this VEN's signature."""
    root = m.parse_tree(body)
    sign_tree(root, key_pem, cert_pem, now, nonce)
    return m.serialize(root)


def render_signed(message: m.Message, key_pem: bytes, cert_pem: bytes, now: float) -> bytes:
    """``render`` and ``sign`` in one: the payload as this VEN sends it."""
    root = m.build(message)
    sign_tree(root, key_pem, cert_pem, now)
    return m.serialize(root)


# ------------------------------------------------------------------ verifying


@attrs.define
class ReplayGuard:
    """The (timestamp, nonce) pairs seen within ``window_s``: a signed
    message replayed within the window is refused, one older than the
    window is refused by its age."""

    window_s: float = DEFAULT_MAX_AGE_S
    seen: dict[tuple[float, str], float] = attrs.field(factory=dict)

    def check(self, timestamp: float, nonce: str, now: float) -> None:
        for key, at in list(self.seen.items()):
            if at < now - self.window_s:
                del self.seen[key]
        if (timestamp, nonce) in self.seen:
            raise SignatureError(f"replayed: the nonce {nonce} of {m.format_datetime(timestamp)} was already used")
        self.seen[(timestamp, nonce)] = timestamp


def is_signed(body: bytes) -> bool:
    """Whether a payload carries a ``ds:Signature`` (``MessageError`` if it
    is not a payload)."""
    return m.parse_tree(body).find(f"{{{m.DS}}}Signature") is not None


def signer_certificate(root: etree._Element) -> x509.Certificate:
    """The certificate a signed payload carries in its ``KeyInfo``."""
    signature = root.find(f"{{{m.DS}}}Signature")
    if signature is None:
        raise SignatureError("the message is not signed (no ds:Signature in oadrPayload)")
    found = signature.findall(f"{{{m.DS}}}KeyInfo/{{{m.DS}}}X509Data/{{{m.DS}}}X509Certificate")
    if len(found) != 1:
        raise SignatureError(f"the signature carries {len(found)} certificates in KeyInfo/X509Data, one expected")
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join((found[0].text or "").split()),
                                                               validate=True))
    except (ValueError, binascii.Error) as e:
        raise SignatureError(f"the signature's certificate cannot be read ({e})") from None


def _check_certificate(cert: x509.Certificate, now: float, expected_fingerprint: str | None,
                       ca_pem: bytes | None, cert_pem: bytes | None) -> None:
    if expected_fingerprint is None and ca_pem is None and cert_pem is None:
        raise SignatureError("nothing to check the signer against (give the VTN's fingerprint, certificate or CA)")
    if cert_pem is not None and cert != x509.load_pem_x509_certificate(cert_pem):
        raise SignatureError(f"signed with another certificate than the VTN's ({cert.subject.rfc4514_string()}, "
                             f"fingerprint {fingerprint(cert)})")
    if expected_fingerprint is not None:
        got = fingerprint(cert)
        if got != normalize_fingerprint(expected_fingerprint):
            raise SignatureError(f"signed with a certificate of fingerprint {got}, not the VTN's "
                                 f"{normalize_fingerprint(expected_fingerprint)}")
    if ca_pem is not None:
        ca = x509.load_pem_x509_certificate(ca_pem)
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            raise SignatureError(f"signed with a certificate ({cert.subject.rfc4514_string()}) the VTN's CA "
                                 f"({ca.subject.rfc4514_string()}) did not issue") from None
        moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
        if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
            raise SignatureError(f"signed with a certificate valid from {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} "
                                 f"to {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, not now")


def verify_tree(root: etree._Element, now: float, *, expected_fingerprint: str | None = None,
                ca_pem: bytes | None = None, cert_pem: bytes | None = None, max_age_s: float = DEFAULT_MAX_AGE_S,
                replay: ReplayGuard | None = None) -> etree._Element:
    """Verify a parsed payload's signature; returns the ``oadrSignedObject``
    it covers (see ``verify``)."""
    cert = signer_certificate(root)
    _check_certificate(cert, now, expected_fingerprint, ca_pem, cert_pem)
    signed = root.find(f"{{{m.OADR}}}oadrSignedObject")
    if signed is None or signed.get(f"{{{m.OADR}}}Id") != m.SIGNED_OBJECT_ID:
        raise SignatureError(f"the payload's oadrSignedObject does not carry oadr:Id=\"{m.SIGNED_OBJECT_ID}\"")
    pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    try:
        verified = XMLVerifier().verify(root, x509_cert=pem, expect_references=2)
    except InvalidInput as e:
        raise SignatureError(f"the signature is malformed ({e})") from None
    except SignXMLException as e:
        raise SignatureError(f"the signature does not hold ({e})") from None
    results = verified if isinstance(verified, list) else [verified]
    covered = {result.signed_xml.tag if result.signed_xml is not None else None for result in results}
    if f"{{{m.OADR}}}oadrSignedObject" not in covered or f"{{{m.DS}}}Object" not in covered:
        raise SignatureError("the signature does not cover both the oadrSignedObject and its ReplayProtect")
    protect = [r.signed_xml for r in results if r.signed_xml is not None and r.signed_xml.tag == f"{{{m.DS}}}Object"]
    timestamp_text = protect[0].findtext(f".//{{{m.DSP}}}timestamp")
    nonce = protect[0].findtext(f".//{{{m.DSP}}}nonce")
    if not timestamp_text or not nonce:
        raise SignatureError("the signature's ReplayProtect has no timestamp or no nonce")
    try:
        timestamp = m.parse_datetime(timestamp_text.strip())
    except ValueError as e:
        raise SignatureError(f"the signature's ReplayProtect timestamp: {e}") from None
    if timestamp < now - max_age_s:
        raise SignatureError(f"signed at {m.format_datetime(timestamp)}, more than {max_age_s:.0f} s ago")
    if timestamp > now + max_age_s:
        raise SignatureError(f"signed at {m.format_datetime(timestamp)}, more than {max_age_s:.0f} s from now "
                             "(check both clocks)")
    if replay is not None:
        replay.check(timestamp, nonce.strip(), now)
    return signed


def verify(body: bytes, now: float, *, expected_fingerprint: str | None = None, ca_pem: bytes | None = None,
           cert_pem: bytes | None = None, max_age_s: float = DEFAULT_MAX_AGE_S,
           replay: ReplayGuard | None = None) -> m.Message:
    """Check the VTN's signature on a payload and return its message.

    The signer's certificate must match ``expected_fingerprint`` (OpenADR's),
    equal ``cert_pem``, and/or be issued by ``ca_pem`` and valid at ``now``
    (each one given is checked; at least one must be).  The ReplayProtect
    timestamp must be within ``max_age_s`` of ``now``, and its nonce new to
    ``replay``.  ``SignatureError`` says which check failed;
    ``MessageError`` if the body is not a payload or its message cannot be
    read.
    """
    root = m.parse_tree(body)
    verify_tree(root, now, expected_fingerprint=expected_fingerprint, ca_pem=ca_pem, cert_pem=cert_pem,
                max_age_s=max_age_s, replay=replay)
    return m.message_of(root)
