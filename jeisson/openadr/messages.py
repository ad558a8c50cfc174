"""OpenADR 2.0b messages: frozen attrs classes, ``parse(body)`` and ``render(message)``.

Pure: bytes in, message objects out, and back; no reactor, no transport.
Each class is one payload of the EiRegisterParty, EiEvent, EiReport, EiOpt
and OadrPoll services, as a VEN sends or receives it inside
``oadrPayload/oadrSignedObject``.  Times are UTC epoch seconds (floats, as
everywhere in jeisson), durations are seconds; ``render`` writes durations
to the whole second (the 2.0b schema's ``DurationValueType`` has no
fractions).

``parse`` accepts what the 2.0b schema allows and what a VEN needs; it does
not validate against the schema (``jeisson.openadr.schema`` does, where the
XSDs are at hand).  Bad input raises ``MessageError`` naming the element
(``oadrDistributeEvent/oadrEvent[2]/eiEvent/eventDescriptor/modificationNumber:
'two' is not an integer``).  A document with a DOCTYPE is refused (no
entities, no external references), and nothing is fetched from the network.

``render`` writes a complete ``oadrPayload`` without a signature;
``jeisson.openadr.signature.sign`` adds one.
"""

import datetime
import re
from collections.abc import Callable
from typing import ClassVar, TypeAlias, TypeVar, cast

import attrs
from lxml import etree  # type: ignore[import-untyped]  # no stubs in the venv (types-lxml)

OADR = "http://openadr.org/oadr-2.0b/2012/07"
EI = "http://docs.oasis-open.org/ns/energyinterop/201110"
PYLD = "http://docs.oasis-open.org/ns/energyinterop/201110/payloads"
EMIX = "http://docs.oasis-open.org/ns/emix/2011/06"
XCAL = "urn:ietf:params:xml:ns:icalendar-2.0"
STRM = "urn:ietf:params:xml:ns:icalendar-2.0:stream"
POWER = "http://docs.oasis-open.org/ns/emix/2011/06/power"
SCALE = "http://docs.oasis-open.org/ns/emix/2011/06/siscale"
DS = "http://www.w3.org/2000/09/xmldsig#"
DSP = "http://openadr.org/oadr-2.0b/2012/07/xmldsig-properties"

NAMESPACES = {"oadr": OADR, "ei": EI, "pyld": PYLD, "emix": EMIX, "xcal": XCAL, "strm": STRM, "power": POWER,
              "scale": SCALE}

SCHEMA_VERSION = "2.0b"
SIGNED_OBJECT_ID = "oadrSignedObject"

# The largest body ``parse`` reads: a distribute-event with many events and
# intervals is tens of kB; a megabyte is a misbehaving or hostile peer.
MAX_BODY = 1 << 20

OPT_IN = "optIn"
OPT_OUT = "optOut"
OPT_TYPES = (OPT_IN, OPT_OUT)
RESPONSE_REQUIRED = ("always", "never")
EVENT_STATUSES = ("none", "far", "near", "active", "completed", "cancelled")


class MessageError(ValueError):
    """A body that is not a 2.0b message jeisson can read: ``where`` is the
    element's path (``oadrDistributeEvent/oadrEvent[1]/...``), ``what``
    what was wrong with it."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}" if where else what)
        self.where = where
        self.what = what


# ------------------------------------------------------------------ times

_DATETIME = re.compile(r"^([+-]?\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d*)?(Z|[+-]\d{2}:\d{2})?$")
_DURATION = re.compile(r"^([+-])?P(?:(\d+)W|(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?)$")


def parse_datetime(text: str) -> float:
    """An ``xs:dateTime`` as OpenADR writes it (``2026-12-03T12:00:00Z``,
    fractions and offsets allowed; none means UTC) -> UTC epoch seconds."""
    match = _DATETIME.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a date-time (2026-12-03T12:00:00Z)")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = float(match.group(7)) if match.group(7) and match.group(7) != "." else 0.0
    zone = match.group(8)
    offset = 0
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    try:
        moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
    except ValueError as e:
        raise ValueError(f"{text!r} is not a date-time ({e})") from None
    return moment.timestamp() + fraction - offset


def format_datetime(seconds: float) -> str:
    """UTC epoch seconds -> ``2026-12-03T12:00:00Z`` (microseconds when not whole)."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_duration(text: str) -> float:
    """An RFC 5545 duration (``PT1H``, ``P1DT30M``, ``P2W``, ``-PT5M``) ->
    seconds.  Years and months have no fixed length and are refused."""
    match = _DURATION.match(text)
    if match is None or text.rstrip("T").endswith("P") or text.endswith("T"):
        raise ValueError(f"{text!r} is not a duration (PT1H, P1DT30M, PT90S)")
    sign, weeks, days, hours, minutes, seconds = match.groups()
    total = (int(weeks or 0) * 7 * 86400 + int(days or 0) * 86400 + int(hours or 0) * 3600
             + int(minutes or 0) * 60 + float(seconds or 0))
    return -total if sign == "-" else total


def format_duration(seconds: float) -> str:
    """Seconds -> ``PT1H30M`` (to the whole second; ``PT0S`` for nothing)."""
    whole = int(round(seconds))
    sign = "-" if whole < 0 else ""
    whole = abs(whole)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{sign}P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs else "")
    if clock or not days:
        text += "T" + (clock or "0S")
    return text


# ------------------------------------------------------------------ reading


_T = TypeVar("_T")


class _Node:
    """An element being read, with its path for errors."""

    def __init__(self, element: etree._Element, path: str) -> None:
        self.element = element
        self.path = path
        self._by_tag: dict[str, list[etree._Element]] | None = None

    def error(self, what: str) -> MessageError:
        return MessageError(self.path, what)

    def children(self, ns: str, name: str) -> list["_Node"]:
        if self._by_tag is None:
            # One pass over the children: a node is asked for several.
            self._by_tag = {}
            for child in self.element:
                self._by_tag.setdefault(child.tag, []).append(child)
        found = self._by_tag.get(f"{{{ns}}}{name}", [])
        if len(found) == 1:
            return [_Node(found[0], f"{self.path}/{name}")]
        return [_Node(e, f"{self.path}/{name}[{i}]") for i, e in enumerate(found, 1)]

    def optional(self, ns: str, name: str) -> "_Node | None":
        found = self.children(ns, name)
        if len(found) > 1:
            raise self.error(f"{name} appears {len(found)} times, at most once expected")
        return found[0] if found else None

    def child(self, ns: str, name: str) -> "_Node":
        found = self.optional(ns, name)
        if found is None:
            raise self.error(f"{name} is missing")
        return found

    @property
    def text(self) -> str:
        return (self.element.text or "").strip()

    def value(self, ns: str, name: str, convert: Callable[[str], _T], what: str, default: _T | None = None,
              required: bool = True) -> _T:
        node = self.optional(ns, name)
        if node is None or (not node.text and not required):
            if required and default is None:
                raise self.error(f"{name} is missing")
            return default  # type: ignore[return-value]
        try:
            return convert(node.text)
        except ValueError as e:
            raise node.error(f"{node.text!r} is not {what}" + (f" ({e})" if str(e) and "not" not in str(e) else
                                                                 "")) from None

    def string(self, ns: str, name: str) -> str:
        node = self.child(ns, name)
        if not node.text:
            raise node.error("is empty")
        return node.text

    def optional_string(self, ns: str, name: str) -> str | None:
        node = self.optional(ns, name)
        return node.text if node is not None and node.text else None

    def strings(self, ns: str, name: str) -> tuple[str, ...]:
        return tuple(n.text for n in self.children(ns, name) if n.text)

    def integer(self, ns: str, name: str, default: int | None = None) -> int:
        return self.value(ns, name, int, "an integer", default, required=default is None)

    def number(self, ns: str, name: str) -> float:
        return self.value(ns, name, _finite, "a number")

    def optional_number(self, ns: str, name: str) -> float | None:
        node = self.optional(ns, name)
        return None if node is None else self.number(ns, name)

    def boolean(self, ns: str, name: str, default: bool | None = None) -> bool:
        return self.value(ns, name, _boolean, "a boolean (true or false)", default, required=default is None)

    def time(self, ns: str, name: str) -> float:
        """An xcal ``<name><date-time>...</date-time></name>`` wrapper."""
        return self.child(ns, name).value(XCAL, "date-time", parse_datetime, "a date-time")

    def optional_time(self, ns: str, name: str) -> float | None:
        node = self.optional(ns, name)
        return None if node is None else node.value(XCAL, "date-time", parse_datetime, "a date-time")

    def duration(self, ns: str, name: str) -> float:
        """An xcal ``<name><duration>PT1H</duration></name>`` wrapper."""
        return self.child(ns, name).value(XCAL, "duration", parse_duration, "a duration")

    def optional_duration(self, ns: str, name: str) -> float | None:
        node = self.optional(ns, name)
        return None if node is None else node.value(XCAL, "duration", parse_duration, "a duration")

    def plain_duration(self, ns: str, name: str) -> float:
        return self.value(ns, name, parse_duration, "a duration")


def _finite(text: str) -> float:
    number = float(text)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError("")
    return number


def _boolean(text: str) -> bool:
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError("")


# ------------------------------------------------------------------ writing


def _sub(parent: etree._Element, ns: str, name: str, text: object = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{name}")
    if text is not None:
        element.text = _text(text)
    return element


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _opt(parent: etree._Element, ns: str, name: str, value: object) -> None:
    if value is not None:
        _sub(parent, ns, name, value)


def _time(parent: etree._Element, ns: str, name: str, seconds: float) -> None:
    _sub(_sub(parent, ns, name), XCAL, "date-time", format_datetime(seconds))


def _duration(parent: etree._Element, ns: str, name: str, seconds: float) -> None:
    _sub(_sub(parent, ns, name), XCAL, "duration", format_duration(seconds))


# ------------------------------------------------------------------ common parts


@attrs.frozen
class EiResponse:
    """``ei:eiResponse``: a 3-digit code (2xx success), its description, and
    the request it answers."""

    code: int = 200
    description: str = "OK"
    request_id: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    def write(self, parent: etree._Element) -> None:
        element = _sub(parent, EI, "eiResponse")
        _sub(element, EI, "responseCode", f"{self.code:03d}")
        _sub(element, EI, "responseDescription", self.description)
        _sub(element, PYLD, "requestID", self.request_id)

    @classmethod
    def read(cls, node: _Node) -> "EiResponse":
        response = node.child(EI, "eiResponse")
        code = response.integer(EI, "responseCode")
        description = response.optional_string(EI, "responseDescription") or ""
        request = response.optional(PYLD, "requestID")
        return cls(code, description, request.text if request is not None else "")


@attrs.frozen
class Targets:
    """``ei:eiTarget``: whom an event (or signal) is for.  Empty: everyone."""

    group_ids: tuple[str, ...] = ()
    group_names: tuple[str, ...] = ()
    resource_ids: tuple[str, ...] = ()
    ven_ids: tuple[str, ...] = ()
    party_ids: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.group_ids or self.group_names or self.resource_ids or self.ven_ids or self.party_ids)

    def write(self, parent: etree._Element, name: str = "eiTarget") -> None:
        element = _sub(parent, EI, name)
        for tag, values in (("groupID", self.group_ids), ("groupName", self.group_names),
                            ("resourceID", self.resource_ids), ("venID", self.ven_ids), ("partyID", self.party_ids)):
            for value in values:
                _sub(element, EI, tag, value)

    @classmethod
    def read(cls, node: _Node | None) -> "Targets":
        if node is None:
            return cls()
        return cls(node.strings(EI, "groupID"), node.strings(EI, "groupName"), node.strings(EI, "resourceID"),
                   node.strings(EI, "venID"), node.strings(EI, "partyID"))


@attrs.frozen
class PowerAttributes:
    hertz: float = 50.0
    voltage: float = 230.0
    ac: bool = True


# Where each item (``emix:itemBase`` substitute) lives: OpenADR puts the
# power and energy items in the EMIX power namespace, the others in oadr's.
ITEM_NAMESPACES = {
    "powerReal": POWER, "powerApparent": POWER, "powerReactive": POWER, "energyReal": POWER,
    "energyApparent": POWER, "energyReactive": POWER, "voltage": POWER,
    "current": OADR, "frequency": OADR, "temperature": OADR, "Therm": OADR, "pulseCount": OADR, "customUnit": OADR,
    "currency": OADR, "currencyPerKW": OADR, "currencyPerKWh": OADR, "currencyPerThm": OADR,
}
_ITEM_TAGS = {f"{{{ns}}}{name}": name for name, ns in ITEM_NAMESPACES.items()}


@attrs.frozen
class Item:
    """An ``emix:itemBase``: what a signal's or a report's numbers are
    (``powerReal`` in ``W``, scale ``none``; ``k`` for kW)."""

    name: str = "powerReal"
    description: str = "RealPower"
    units: str = "W"
    scale: str = "none"
    power: PowerAttributes | None = PowerAttributes()

    @property
    def factor(self) -> float:
        """What a value multiplies by to reach the base unit (``k``: 1000)."""
        return _SCALES.get(self.scale, 1.0)

    def write(self, parent: etree._Element) -> None:
        ns = ITEM_NAMESPACES[self.name]
        element = _sub(parent, ns, self.name)
        _sub(element, ns, "itemDescription", self.description)
        _sub(element, ns, "itemUnits", self.units)
        _sub(element, SCALE, "siScaleCode", self.scale)
        if self.power is not None:
            attributes = _sub(element, POWER, "powerAttributes")
            _sub(attributes, POWER, "hertz", self.power.hertz)
            _sub(attributes, POWER, "voltage", self.power.voltage)
            _sub(attributes, POWER, "ac", self.power.ac)

    @classmethod
    def read(cls, node: _Node) -> "Item | None":
        for element in node.element:
            name = _ITEM_TAGS.get(element.tag) if isinstance(element.tag, str) else None
            if name is None:
                continue
            item = _Node(element, f"{node.path}/{name}")
            ns = ITEM_NAMESPACES[name]
            scale = item.optional_string(SCALE, "siScaleCode") or "none"
            power = None
            attributes = item.optional(POWER, "powerAttributes")
            if attributes is not None:
                power = PowerAttributes(attributes.number(POWER, "hertz"), attributes.number(POWER, "voltage"),
                                        attributes.boolean(POWER, "ac"))
            return cls(name, item.optional_string(ns, "itemDescription") or "",
                       item.optional_string(ns, "itemUnits") or "", scale, power)
        return None


_SCALES = {"p": 1e-12, "n": 1e-9, "micro": 1e-6, "m": 1e-3, "c": 1e-2, "d": 1e-1, "none": 1.0, "k": 1e3, "M": 1e6,
           "G": 1e9, "T": 1e12}


# ------------------------------------------------------------------ messages


class _Message:
    """What every message has: its element name, and how it writes itself
    inside the message element and reads itself from it."""

    NAME: ClassVar[str]

    def write(self, element: etree._Element) -> None:
        raise NotImplementedError

    @classmethod
    def read(cls, node: _Node) -> "_Message":
        raise NotImplementedError


# --- EiRegisterParty


@attrs.frozen
class QueryRegistration(_Message):
    """VEN -> VTN: what the VTN offers (profiles, transports, poll frequency)."""

    NAME: ClassVar[str] = "oadrQueryRegistration"
    request_id: str

    def write(self, element: etree._Element) -> None:
        _sub(element, PYLD, "requestID", self.request_id)

    @classmethod
    def read(cls, node: _Node) -> "QueryRegistration":
        return cls(node.string(PYLD, "requestID"))


@attrs.frozen
class CreatePartyRegistration(_Message):
    """VEN -> VTN: register (or re-register, with the ids it holds)."""

    NAME: ClassVar[str] = "oadrCreatePartyRegistration"
    request_id: str
    ven_name: str
    registration_id: str | None = None
    ven_id: str | None = None
    profile_name: str = SCHEMA_VERSION
    transport_name: str = "simpleHttp"
    transport_address: str | None = None
    report_only: bool = False
    xml_signature: bool = False
    http_pull_model: bool = True

    def write(self, element: etree._Element) -> None:
        _sub(element, PYLD, "requestID", self.request_id)
        _opt(element, EI, "registrationID", self.registration_id)
        _opt(element, EI, "venID", self.ven_id)
        _sub(element, OADR, "oadrProfileName", self.profile_name)
        _sub(element, OADR, "oadrTransportName", self.transport_name)
        _opt(element, OADR, "oadrTransportAddress", self.transport_address)
        _sub(element, OADR, "oadrReportOnly", self.report_only)
        _sub(element, OADR, "oadrXmlSignature", self.xml_signature)
        _sub(element, OADR, "oadrVenName", self.ven_name)
        _sub(element, OADR, "oadrHttpPullModel", self.http_pull_model)

    @classmethod
    def read(cls, node: _Node) -> "CreatePartyRegistration":
        return cls(node.string(PYLD, "requestID"), node.optional_string(OADR, "oadrVenName") or "",
                   node.optional_string(EI, "registrationID"), node.optional_string(EI, "venID"),
                   node.string(OADR, "oadrProfileName"), node.string(OADR, "oadrTransportName"),
                   node.optional_string(OADR, "oadrTransportAddress"), node.boolean(OADR, "oadrReportOnly"),
                   node.boolean(OADR, "oadrXmlSignature"), node.boolean(OADR, "oadrHttpPullModel", True))


@attrs.frozen
class Profile:
    name: str = SCHEMA_VERSION
    transports: tuple[str, ...] = ("simpleHttp",)


@attrs.frozen
class CreatedPartyRegistration(_Message):
    """VTN -> VEN: the answer to a query or a registration: the ids (empty
    until registered), the VTN's profiles, and how often to poll."""

    NAME: ClassVar[str] = "oadrCreatedPartyRegistration"
    response: EiResponse
    vtn_id: str
    registration_id: str | None = None
    ven_id: str | None = None
    profiles: tuple[Profile, ...] = (Profile(),)
    poll_freq_s: float | None = None

    def write(self, element: etree._Element) -> None:
        self.response.write(element)
        _opt(element, EI, "registrationID", self.registration_id)
        _opt(element, EI, "venID", self.ven_id)
        _sub(element, EI, "vtnID", self.vtn_id)
        profiles = _sub(element, OADR, "oadrProfiles")
        for profile in self.profiles:
            written = _sub(profiles, OADR, "oadrProfile")
            _sub(written, OADR, "oadrProfileName", profile.name)
            transports = _sub(written, OADR, "oadrTransports")
            for transport in profile.transports:
                _sub(_sub(transports, OADR, "oadrTransport"), OADR, "oadrTransportName", transport)
        if self.poll_freq_s is not None:
            _duration(element, OADR, "oadrRequestedOadrPollFreq", self.poll_freq_s)

    @classmethod
    def read(cls, node: _Node) -> "CreatedPartyRegistration":
        profiles = []
        for profile in node.child(OADR, "oadrProfiles").children(OADR, "oadrProfile"):
            transports = profile.optional(OADR, "oadrTransports")
            names = tuple(t.string(OADR, "oadrTransportName") for t in transports.children(OADR, "oadrTransport")) \
                if transports is not None else ()
            profiles.append(Profile(profile.string(OADR, "oadrProfileName"), names))
        return cls(EiResponse.read(node), node.optional_string(EI, "vtnID") or "",
                   node.optional_string(EI, "registrationID"), node.optional_string(EI, "venID"), tuple(profiles),
                   node.optional_duration(OADR, "oadrRequestedOadrPollFreq"))


@attrs.frozen
class CancelPartyRegistration(_Message):
    """Either side: end the registration."""

    NAME: ClassVar[str] = "oadrCancelPartyRegistration"
    request_id: str
    registration_id: str
    ven_id: str | None = None

    def write(self, element: etree._Element) -> None:
        _sub(element, PYLD, "requestID", self.request_id)
        _sub(element, EI, "registrationID", self.registration_id)
        _opt(element, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "CancelPartyRegistration":
        return cls(node.string(PYLD, "requestID"), node.string(EI, "registrationID"),
                   node.optional_string(EI, "venID"))


@attrs.frozen
class CanceledPartyRegistration(_Message):
    NAME: ClassVar[str] = "oadrCanceledPartyRegistration"
    response: EiResponse
    registration_id: str | None = None
    ven_id: str | None = None

    def write(self, element: etree._Element) -> None:
        self.response.write(element)
        _opt(element, EI, "registrationID", self.registration_id)
        _opt(element, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "CanceledPartyRegistration":
        return cls(EiResponse.read(node), node.optional_string(EI, "registrationID"),
                   node.optional_string(EI, "venID"))


@attrs.frozen
class RequestReregistration(_Message):
    """VTN -> VEN (in a poll's answer): register again."""

    NAME: ClassVar[str] = "oadrRequestReregistration"
    ven_id: str

    def write(self, element: etree._Element) -> None:
        _sub(element, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "RequestReregistration":
        return cls(node.string(EI, "venID"))


# --- OadrPoll


@attrs.frozen
class Poll(_Message):
    """VEN -> VTN: anything for me?  The answer is any VTN -> VEN message,
    or a ``Response`` when there is nothing."""

    NAME: ClassVar[str] = "oadrPoll"
    ven_id: str

    def write(self, element: etree._Element) -> None:
        _sub(element, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "Poll":
        return cls(node.string(EI, "venID"))


@attrs.frozen
class Response(_Message):
    """Either side: a plain acknowledgement (or refusal, by its code)."""

    NAME: ClassVar[str] = "oadrResponse"
    response: EiResponse
    ven_id: str | None = None

    def write(self, element: etree._Element) -> None:
        self.response.write(element)
        _opt(element, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "Response":
        return cls(EiResponse.read(node), node.optional_string(EI, "venID"))


# --- EiEvent


@attrs.frozen
class Interval:
    """One interval of a signal: its length and value; ``uid`` its number
    as the VTN wrote it; ``dtstart`` only when the VTN gives one (OpenADR
    intervals follow each other from the event's start)."""

    duration_s: float
    value: float
    uid: str | None = None
    dtstart: float | None = None

    def write(self, parent: etree._Element) -> None:
        element = _sub(parent, EI, "interval")
        if self.dtstart is not None:
            _time(element, XCAL, "dtstart", self.dtstart)
        _duration(element, XCAL, "duration", self.duration_s)
        if self.uid is not None:
            _sub(_sub(element, XCAL, "uid"), XCAL, "text", self.uid)
        _sub(_sub(_sub(element, EI, "signalPayload"), EI, "payloadFloat"), EI, "value", self.value)

    @classmethod
    def read(cls, node: _Node) -> "Interval":
        duration = node.duration(XCAL, "duration")
        if duration < 0:
            raise node.error(f"a negative duration ({format_duration(duration)})")
        uid = node.optional(XCAL, "uid")
        payload = node.child(EI, "signalPayload")
        value = _payload_value(payload)
        return cls(duration, value, uid.optional_string(XCAL, "text") if uid is not None else None,
                   node.optional_time(XCAL, "dtstart"))


def _payload_value(node: _Node) -> float:
    for name in ("payloadFloat", "oadrPayloadResourceStatus"):
        found = node.optional(EI, name)
        if found is not None:
            return found.number(EI, "value")
    raise node.error("payloadFloat is missing")


@attrs.frozen
class EventSignal:
    """``ei:eiEventSignal``: a named signal (``SIMPLE``, ``LOAD_DISPATCH``,
    ``LOAD_CONTROL``...) of a type (``level``, ``setpoint``,
    ``x-loadControlCapacity``...), its intervals, and what its numbers are."""

    name: str
    type: str
    signal_id: str
    intervals: tuple[Interval, ...]
    item: Item | None = None
    current_value: float | None = None
    targets: Targets | None = None

    def write(self, parent: etree._Element) -> None:
        element = _sub(parent, EI, "eiEventSignal")
        intervals = _sub(element, STRM, "intervals")
        for interval in self.intervals:
            interval.write(intervals)
        if self.targets is not None:
            self.targets.write(element)
        _sub(element, EI, "signalName", self.name)
        _sub(element, EI, "signalType", self.type)
        _sub(element, EI, "signalID", self.signal_id)
        if self.item is not None:
            self.item.write(element)
        if self.current_value is not None:
            _sub(_sub(_sub(element, EI, "currentValue"), EI, "payloadFloat"), EI, "value", self.current_value)

    @classmethod
    def read(cls, node: _Node) -> "EventSignal":
        intervals = tuple(Interval.read(n) for n in node.child(STRM, "intervals").children(EI, "interval"))
        if not intervals:
            raise node.child(STRM, "intervals").error("no interval")
        current = node.optional(EI, "currentValue")
        targets = node.optional(EI, "eiTarget")
        return cls(node.string(EI, "signalName"), node.string(EI, "signalType"), node.string(EI, "signalID"),
                   intervals, Item.read(node), _payload_value(current) if current is not None else None,
                   Targets.read(targets) if targets is not None else None)


@attrs.frozen
class OadrEvent:
    """One ``oadrEvent``: the event's descriptor, its active period, its
    signals and targets, and whether the VTN wants an answer.

    ``start_after_s`` is the active period's tolerance (randomisation: each
    VEN starts up to that long after ``dtstart``); ``test_event`` is true
    for any ``testEvent`` other than ``false`` (OpenADR rule 6).
    """

    event_id: str
    modification_number: int
    status: str
    dtstart: float
    duration_s: float
    signals: tuple[EventSignal, ...]
    market_context: str = "http://jeisson/market"
    created: float = 0.0
    targets: Targets = Targets()
    response_required: str = "always"
    start_after_s: float | None = None
    test_event: bool = False
    priority: int | None = None
    modification_date_time: float | None = None
    modification_reason: str | None = None
    vtn_comment: str | None = None
    notification_s: float | None = None
    ramp_up_s: float | None = None
    recovery_s: float | None = None

    @property
    def end(self) -> float:
        """When the event ends (a duration of 0 is open-ended in OpenADR:
        then its intervals say how long)."""
        if self.duration_s > 0:
            return self.dtstart + self.duration_s
        return self.dtstart + max(sum(i.duration_s for i in s.intervals) for s in self.signals)

    def write(self, parent: etree._Element) -> None:
        wrapper = _sub(parent, OADR, "oadrEvent")
        event = _sub(wrapper, EI, "eiEvent")
        descriptor = _sub(event, EI, "eventDescriptor")
        _sub(descriptor, EI, "eventID", self.event_id)
        _sub(descriptor, EI, "modificationNumber", self.modification_number)
        if self.modification_date_time is not None:
            _sub(descriptor, EI, "modificationDateTime", format_datetime(self.modification_date_time))
        _opt(descriptor, EI, "modificationReason", self.modification_reason)
        _opt(descriptor, EI, "priority", self.priority)
        _sub(_sub(descriptor, EI, "eiMarketContext"), EMIX, "marketContext", self.market_context)
        _sub(descriptor, EI, "createdDateTime", format_datetime(self.created))
        _sub(descriptor, EI, "eventStatus", self.status)
        _sub(descriptor, EI, "testEvent", self.test_event)
        _opt(descriptor, EI, "vtnComment", self.vtn_comment)
        period = _sub(event, EI, "eiActivePeriod")
        properties = _sub(period, XCAL, "properties")
        _time(properties, XCAL, "dtstart", self.dtstart)
        _duration(properties, XCAL, "duration", self.duration_s)
        if self.start_after_s is not None:
            _sub(_sub(_sub(properties, XCAL, "tolerance"), XCAL, "tolerate"), XCAL, "startafter",
                 format_duration(self.start_after_s))
        for name, seconds in (("x-eiNotification", self.notification_s), ("x-eiRampUp", self.ramp_up_s),
                              ("x-eiRecovery", self.recovery_s)):
            if seconds is not None:
                _sub(_sub(properties, EI, name), XCAL, "duration", format_duration(seconds))
        _sub(period, XCAL, "components")
        signals = _sub(event, EI, "eiEventSignals")
        for signal in self.signals:
            signal.write(signals)
        self.targets.write(event)
        _sub(wrapper, OADR, "oadrResponseRequired", self.response_required)

    @classmethod
    def read(cls, node: _Node) -> "OadrEvent":
        event = node.child(EI, "eiEvent")
        descriptor = event.child(EI, "eventDescriptor")
        modification = descriptor.integer(EI, "modificationNumber")
        if modification < 0:
            raise descriptor.child(EI, "modificationNumber").error(f"{modification} is negative")
        status = descriptor.string(EI, "eventStatus")
        if status not in EVENT_STATUSES:
            raise descriptor.child(EI, "eventStatus").error(f"{status!r} is not one of {', '.join(EVENT_STATUSES)}")
        test = descriptor.optional_string(EI, "testEvent")
        properties = event.child(EI, "eiActivePeriod").child(XCAL, "properties")
        duration = properties.duration(XCAL, "duration")
        if duration < 0:
            raise properties.child(XCAL, "duration").error(f"a negative duration ({format_duration(duration)})")
        tolerance = properties.optional(XCAL, "tolerance")
        tolerate = tolerance.optional(XCAL, "tolerate") if tolerance is not None else None
        start_after = None
        if tolerate is not None and tolerate.optional(XCAL, "startafter") is not None:
            start_after = tolerate.plain_duration(XCAL, "startafter")
            if start_after < 0:
                raise tolerate.child(XCAL, "startafter").error("a negative start-after")
        signals_node = event.child(EI, "eiEventSignals")
        signals = tuple(EventSignal.read(n) for n in signals_node.children(EI, "eiEventSignal"))
        if not signals:
            raise signals_node.error("no eiEventSignal")
        required = node.string(OADR, "oadrResponseRequired")
        if required not in RESPONSE_REQUIRED:
            raise node.child(OADR, "oadrResponseRequired").error(f"{required!r} is not always or never")
        market = descriptor.child(EI, "eiMarketContext").string(EMIX, "marketContext")
        priority = descriptor.optional(EI, "priority")
        return cls(
            descriptor.string(EI, "eventID"), modification, status, properties.time(XCAL, "dtstart"), duration,
            signals, market, descriptor.value(EI, "createdDateTime", parse_datetime, "a date-time"),
            Targets.read(event.optional(EI, "eiTarget")), required, start_after,
            test is not None and test != "false",
            descriptor.integer(EI, "priority") if priority is not None else None,
            descriptor.value(EI, "modificationDateTime", parse_datetime, "a date-time", required=False),
            descriptor.optional_string(EI, "modificationReason"), descriptor.optional_string(EI, "vtnComment"),
            *(_wrapped_duration(properties, name) for name in ("x-eiNotification", "x-eiRampUp", "x-eiRecovery")))


def _wrapped_duration(node: _Node, name: str) -> float | None:
    found = node.optional(EI, name)
    return None if found is None else found.plain_duration(XCAL, "duration")


@attrs.frozen
class DistributeEvent(_Message):
    """VTN -> VEN: every event the VTN holds for this VEN (an event missing
    from a later one has ended or been withdrawn)."""

    NAME: ClassVar[str] = "oadrDistributeEvent"
    request_id: str
    vtn_id: str
    events: tuple[OadrEvent, ...] = ()
    response: EiResponse | None = None

    def write(self, element: etree._Element) -> None:
        if self.response is not None:
            self.response.write(element)
        _sub(element, PYLD, "requestID", self.request_id)
        _sub(element, EI, "vtnID", self.vtn_id)
        for event in self.events:
            event.write(element)

    @classmethod
    def read(cls, node: _Node) -> "DistributeEvent":
        response = EiResponse.read(node) if node.optional(EI, "eiResponse") is not None else None
        return cls(node.optional_string(PYLD, "requestID") or "", node.string(EI, "vtnID"),
                   tuple(OadrEvent.read(n) for n in node.children(OADR, "oadrEvent")), response)


@attrs.frozen
class EventResponse:
    """One event's answer in an ``oadrCreatedEvent``: optIn or optOut of
    that event at that modification number."""

    event_id: str
    modification_number: int
    opt_type: str
    request_id: str
    code: int = 200
    description: str | None = "OK"

    def write(self, parent: etree._Element) -> None:
        element = _sub(parent, EI, "eventResponse")
        _sub(element, EI, "responseCode", f"{self.code:03d}")
        _opt(element, EI, "responseDescription", self.description)
        _sub(element, PYLD, "requestID", self.request_id)
        qualified = _sub(element, EI, "qualifiedEventID")
        _sub(qualified, EI, "eventID", self.event_id)
        _sub(qualified, EI, "modificationNumber", self.modification_number)
        _sub(element, EI, "optType", self.opt_type)

    @classmethod
    def read(cls, node: _Node) -> "EventResponse":
        qualified = node.child(EI, "qualifiedEventID")
        opt = node.string(EI, "optType")
        if opt not in OPT_TYPES:
            raise node.child(EI, "optType").error(f"{opt!r} is not optIn or optOut")
        request = node.optional(PYLD, "requestID")
        return cls(qualified.string(EI, "eventID"), qualified.integer(EI, "modificationNumber"), opt,
                   request.text if request is not None else "", node.integer(EI, "responseCode"),
                   node.optional_string(EI, "responseDescription"))


@attrs.frozen
class CreatedEvent(_Message):
    """VEN -> VTN: the opt responses to the events that asked for one."""

    NAME: ClassVar[str] = "oadrCreatedEvent"
    response: EiResponse
    ven_id: str
    event_responses: tuple[EventResponse, ...] = ()

    def write(self, element: etree._Element) -> None:
        created = _sub(element, PYLD, "eiCreatedEvent")
        self.response.write(created)
        if self.event_responses:
            responses = _sub(created, EI, "eventResponses")
            for response in self.event_responses:
                response.write(responses)
        _sub(created, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "CreatedEvent":
        created = node.child(PYLD, "eiCreatedEvent")
        responses = created.optional(EI, "eventResponses")
        return cls(EiResponse.read(created), created.string(EI, "venID"),
                   tuple(EventResponse.read(n) for n in responses.children(EI, "eventResponse"))
                   if responses is not None else ())


@attrs.frozen
class RequestEvent(_Message):
    """VEN -> VTN: send me the events you hold for me."""

    NAME: ClassVar[str] = "oadrRequestEvent"
    request_id: str
    ven_id: str
    reply_limit: int | None = None

    def write(self, element: etree._Element) -> None:
        request = _sub(element, PYLD, "eiRequestEvent")
        _sub(request, PYLD, "requestID", self.request_id)
        _sub(request, EI, "venID", self.ven_id)
        _opt(request, PYLD, "replyLimit", self.reply_limit)

    @classmethod
    def read(cls, node: _Node) -> "RequestEvent":
        request = node.child(PYLD, "eiRequestEvent")
        limit = request.optional(PYLD, "replyLimit")
        return cls(request.string(PYLD, "requestID"), request.string(EI, "venID"),
                   request.integer(PYLD, "replyLimit") if limit is not None else None)


# --- EiOpt


OPT_REASONS = ("economic", "emergency", "mustRun", "notParticipating", "outageRunStatus", "overrideStatus",
               "participating", "x-schedule")


@attrs.frozen
class Availability:
    """One ``xcal:available`` stretch of an opt's ``vavailability``."""

    dtstart: float
    duration_s: float


@attrs.frozen
class CreateOpt(_Message):
    """VEN -> VTN: opt in or out, of one event (``event_id`` and its
    ``modification_number``) or of the times in ``availability``."""

    NAME: ClassVar[str] = "oadrCreateOpt"
    opt_id: str
    opt_type: str
    opt_reason: str
    ven_id: str
    created: float
    request_id: str
    event_id: str | None = None
    modification_number: int | None = None
    market_context: str | None = None
    availability: tuple[Availability, ...] = ()
    targets: Targets = Targets()

    def write(self, element: etree._Element) -> None:
        _sub(element, EI, "optID", self.opt_id)
        _sub(element, EI, "optType", self.opt_type)
        _sub(element, EI, "optReason", self.opt_reason)
        _opt(element, EMIX, "marketContext", self.market_context)
        _sub(element, EI, "venID", self.ven_id)
        if self.availability:
            components = _sub(_sub(element, XCAL, "vavailability"), XCAL, "components")
            for stretch in self.availability:
                properties = _sub(_sub(components, XCAL, "available"), XCAL, "properties")
                _time(properties, XCAL, "dtstart", stretch.dtstart)
                _duration(properties, XCAL, "duration", stretch.duration_s)
        _sub(element, EI, "createdDateTime", format_datetime(self.created))
        _sub(element, PYLD, "requestID", self.request_id)
        if self.event_id is not None:
            qualified = _sub(element, EI, "qualifiedEventID")
            _sub(qualified, EI, "eventID", self.event_id)
            _sub(qualified, EI, "modificationNumber", self.modification_number or 0)
        self.targets.write(element)

    @classmethod
    def read(cls, node: _Node) -> "CreateOpt":
        opt = node.string(EI, "optType")
        if opt not in OPT_TYPES:
            raise node.child(EI, "optType").error(f"{opt!r} is not optIn or optOut")
        qualified = node.optional(EI, "qualifiedEventID")
        availability = node.optional(XCAL, "vavailability")
        stretches: tuple[Availability, ...] = ()
        if availability is not None:
            stretches = tuple(
                Availability(p.time(XCAL, "dtstart"), p.duration(XCAL, "duration"))
                for p in (a.child(XCAL, "properties") for a in
                          availability.child(XCAL, "components").children(XCAL, "available")))
        return cls(node.string(EI, "optID"), opt, node.string(EI, "optReason"), node.string(EI, "venID"),
                   node.value(EI, "createdDateTime", parse_datetime, "a date-time"), node.string(PYLD, "requestID"),
                   qualified.string(EI, "eventID") if qualified is not None else None,
                   qualified.integer(EI, "modificationNumber") if qualified is not None else None,
                   node.optional_string(EMIX, "marketContext"), stretches,
                   Targets.read(node.optional(EI, "eiTarget")))


@attrs.frozen
class CreatedOpt(_Message):
    NAME: ClassVar[str] = "oadrCreatedOpt"
    response: EiResponse
    opt_id: str

    def write(self, element: etree._Element) -> None:
        self.response.write(element)
        _sub(element, EI, "optID", self.opt_id)

    @classmethod
    def read(cls, node: _Node) -> "CreatedOpt":
        return cls(EiResponse.read(node), node.string(EI, "optID"))


@attrs.frozen
class CancelOpt(_Message):
    """VEN -> VTN: withdraw an opt."""

    NAME: ClassVar[str] = "oadrCancelOpt"
    request_id: str
    opt_id: str
    ven_id: str

    def write(self, element: etree._Element) -> None:
        _sub(element, PYLD, "requestID", self.request_id)
        _sub(element, EI, "optID", self.opt_id)
        _sub(element, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "CancelOpt":
        return cls(node.string(PYLD, "requestID"), node.string(EI, "optID"), node.string(EI, "venID"))


@attrs.frozen
class CanceledOpt(_Message):
    NAME: ClassVar[str] = "oadrCanceledOpt"
    response: EiResponse
    opt_id: str | None = None

    def write(self, element: etree._Element) -> None:
        self.response.write(element)
        _opt(element, EI, "optID", self.opt_id)

    @classmethod
    def read(cls, node: _Node) -> "CanceledOpt":
        return cls(EiResponse.read(node), node.optional_string(EI, "optID"))


# --- EiReport


@attrs.frozen
class SamplingRate:
    min_period_s: float
    max_period_s: float
    on_change: bool = False


@attrs.frozen
class ReportDescription:
    """``oadrReportDescription``: one data point a report can carry: its
    ``r_id``, what it is (``usage`` / ``Direct Read`` of ``powerReal`` in
    W), and how often it can be sampled."""

    r_id: str
    report_type: str = "usage"
    reading_type: str = "Direct Read"
    item: Item | None = Item()
    market_context: str | None = None
    sampling_rate: SamplingRate | None = None
    data_source: Targets | None = None

    def write(self, parent: etree._Element) -> None:
        element = _sub(parent, OADR, "oadrReportDescription")
        _sub(element, EI, "rID", self.r_id)
        if self.data_source is not None:
            self.data_source.write(element, "reportDataSource")
        _sub(element, EI, "reportType", self.report_type)
        if self.item is not None:
            self.item.write(element)
        _sub(element, EI, "readingType", self.reading_type)
        _opt(element, EMIX, "marketContext", self.market_context)
        if self.sampling_rate is not None:
            rate = _sub(element, OADR, "oadrSamplingRate")
            _sub(rate, OADR, "oadrMinPeriod", format_duration(self.sampling_rate.min_period_s))
            _sub(rate, OADR, "oadrMaxPeriod", format_duration(self.sampling_rate.max_period_s))
            _sub(rate, OADR, "oadrOnChange", self.sampling_rate.on_change)

    @classmethod
    def read(cls, node: _Node) -> "ReportDescription":
        rate = node.optional(OADR, "oadrSamplingRate")
        source = node.optional(EI, "reportDataSource")
        return cls(node.string(EI, "rID"), node.string(EI, "reportType"), node.string(EI, "readingType"),
                   Item.read(node), node.optional_string(EMIX, "marketContext"),
                   SamplingRate(rate.plain_duration(OADR, "oadrMinPeriod"), rate.plain_duration(OADR, "oadrMaxPeriod"),
                                rate.boolean(OADR, "oadrOnChange")) if rate is not None else None,
                   Targets.read(source) if source is not None else None)


@attrs.frozen
class ReportInterval:
    """One reading in an ``oadrUpdateReport``: when, for how long, which
    data point (``r_id``), and its value."""

    dtstart: float
    r_id: str
    value: float
    duration_s: float | None = None
    confidence: int | None = None
    accuracy: float | None = None
    data_quality: str | None = None

    def write(self, parent: etree._Element) -> None:
        element = _sub(parent, EI, "interval")
        _time(element, XCAL, "dtstart", self.dtstart)
        if self.duration_s is not None:
            _duration(element, XCAL, "duration", self.duration_s)
        payload = _sub(element, OADR, "oadrReportPayload")
        _sub(payload, EI, "rID", self.r_id)
        _opt(payload, EI, "confidence", self.confidence)
        _opt(payload, EI, "accuracy", self.accuracy)
        _sub(_sub(payload, EI, "payloadFloat"), EI, "value", self.value)
        _opt(payload, OADR, "oadrDataQuality", self.data_quality)

    @classmethod
    def read(cls, node: _Node) -> "ReportInterval":
        payload = node.child(OADR, "oadrReportPayload")
        confidence = payload.optional(EI, "confidence")
        return cls(node.time(XCAL, "dtstart"), payload.string(EI, "rID"), _payload_value(payload),
                   node.optional_duration(XCAL, "duration"),
                   payload.integer(EI, "confidence") if confidence is not None else None,
                   payload.optional_number(EI, "accuracy"), payload.optional_string(OADR, "oadrDataQuality"))


@attrs.frozen
class Report:
    """``oadrReport``: in a register-report, what a party can report (its
    descriptions; ``report_name`` ``METADATA_...``); in an update-report,
    readings (intervals) for a report request."""

    report_specifier_id: str
    report_name: str | None
    created: float
    report_id: str | None = None
    report_request_id: str = "0"
    dtstart: float | None = None
    duration_s: float | None = None
    descriptions: tuple[ReportDescription, ...] = ()
    intervals: tuple[ReportInterval, ...] = ()

    def write(self, parent: etree._Element) -> None:
        element = _sub(parent, OADR, "oadrReport")
        if self.dtstart is not None:
            _time(element, XCAL, "dtstart", self.dtstart)
        if self.duration_s is not None:
            _duration(element, XCAL, "duration", self.duration_s)
        if self.intervals:
            intervals = _sub(element, STRM, "intervals")
            for interval in self.intervals:
                interval.write(intervals)
        _opt(element, EI, "eiReportID", self.report_id)
        for description in self.descriptions:
            description.write(element)
        _sub(element, EI, "reportRequestID", self.report_request_id)
        _sub(element, EI, "reportSpecifierID", self.report_specifier_id)
        _opt(element, EI, "reportName", self.report_name)
        _sub(element, EI, "createdDateTime", format_datetime(self.created))

    @classmethod
    def read(cls, node: _Node) -> "Report":
        intervals = node.optional(STRM, "intervals")
        return cls(node.string(EI, "reportSpecifierID"), node.optional_string(EI, "reportName"),
                   node.value(EI, "createdDateTime", parse_datetime, "a date-time"),
                   node.optional_string(EI, "eiReportID"), node.optional_string(EI, "reportRequestID") or "0",
                   node.optional_time(XCAL, "dtstart"), node.optional_duration(XCAL, "duration"),
                   tuple(ReportDescription.read(n) for n in node.children(OADR, "oadrReportDescription")),
                   tuple(ReportInterval.read(n) for n in intervals.children(EI, "interval"))
                   if intervals is not None else ())


def _open_if_zero(seconds: float | None) -> float | None:
    return seconds or None


@attrs.frozen
class ReportRequest:
    """``oadrReportRequest``: the VTN asks for a report: which one
    (``report_specifier_id``, the ``eiReportID`` the VEN registered),
    which data points (``r_ids``), read every ``granularity_s`` and sent
    every ``report_back_s``, over ``interval_start`` for
    ``interval_duration_s`` (None: until cancelled; 0 is taken as None)."""

    report_request_id: str
    report_specifier_id: str
    r_ids: tuple[str, ...]
    granularity_s: float
    report_back_s: float
    reading_type: str = "Direct Read"
    interval_start: float | None = None
    interval_duration_s: float | None = attrs.field(default=None, converter=_open_if_zero)

    @interval_duration_s.validator
    def _interval(self, _: object, value: float | None) -> None:
        if value is not None and self.interval_start is None:
            raise ValueError("a report interval's duration needs its start (interval_start)")

    def write(self, parent: etree._Element) -> None:
        element = _sub(parent, OADR, "oadrReportRequest")
        _sub(element, EI, "reportRequestID", self.report_request_id)
        specifier = _sub(element, EI, "reportSpecifier")
        _sub(specifier, EI, "reportSpecifierID", self.report_specifier_id)
        _duration(specifier, XCAL, "granularity", self.granularity_s)
        _duration(specifier, EI, "reportBackDuration", self.report_back_s)
        if self.interval_start is not None:
            properties = _sub(_sub(specifier, EI, "reportInterval"), XCAL, "properties")
            _time(properties, XCAL, "dtstart", self.interval_start)
            _duration(properties, XCAL, "duration", self.interval_duration_s or 0.0)
        for r_id in self.r_ids:
            payload = _sub(specifier, EI, "specifierPayload")
            _sub(payload, EI, "rID", r_id)
            _sub(payload, EI, "readingType", self.reading_type)

    @classmethod
    def read(cls, node: _Node) -> "ReportRequest":
        specifier = node.child(EI, "reportSpecifier")
        payloads = specifier.children(EI, "specifierPayload")
        if not payloads:
            raise specifier.error("specifierPayload is missing")
        interval = specifier.optional(EI, "reportInterval")
        properties = interval.child(XCAL, "properties") if interval is not None else None
        granularity = specifier.duration(XCAL, "granularity")
        back = specifier.optional_duration(EI, "reportBackDuration")
        # A report interval of no length is open: until cancelled.
        length = properties.optional_duration(XCAL, "duration") if properties is not None else None
        return cls(node.string(EI, "reportRequestID"), specifier.string(EI, "reportSpecifierID"),
                   tuple(p.string(EI, "rID") for p in payloads), granularity,
                   back if back is not None else granularity,
                   payloads[0].optional_string(EI, "readingType") or "Direct Read",
                   properties.time(XCAL, "dtstart") if properties is not None else None, length or None)


@attrs.frozen
class RegisterReport(_Message):
    """Either side: the reports this party can give (``METADATA_...``)."""

    NAME: ClassVar[str] = "oadrRegisterReport"
    request_id: str
    reports: tuple[Report, ...] = ()
    ven_id: str | None = None

    def write(self, element: etree._Element) -> None:
        _sub(element, PYLD, "requestID", self.request_id)
        for report in self.reports:
            report.write(element)
        _opt(element, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "RegisterReport":
        return cls(node.string(PYLD, "requestID"), tuple(Report.read(n) for n in node.children(OADR, "oadrReport")),
                   node.optional_string(EI, "venID"))


@attrs.frozen
class RegisteredReport(_Message):
    """The answer to a register-report: acknowledged, and the reports the
    receiver wants now (its report requests)."""

    NAME: ClassVar[str] = "oadrRegisteredReport"
    response: EiResponse
    report_requests: tuple[ReportRequest, ...] = ()
    ven_id: str | None = None

    def write(self, element: etree._Element) -> None:
        self.response.write(element)
        for request in self.report_requests:
            request.write(element)
        _opt(element, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "RegisteredReport":
        return cls(EiResponse.read(node),
                   tuple(ReportRequest.read(n) for n in node.children(OADR, "oadrReportRequest")),
                   node.optional_string(EI, "venID"))


@attrs.frozen
class CreateReport(_Message):
    """Either side: please send these reports."""

    NAME: ClassVar[str] = "oadrCreateReport"
    request_id: str
    report_requests: tuple[ReportRequest, ...]
    ven_id: str | None = None

    def write(self, element: etree._Element) -> None:
        _sub(element, PYLD, "requestID", self.request_id)
        for request in self.report_requests:
            request.write(element)
        _opt(element, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "CreateReport":
        requests = tuple(ReportRequest.read(n) for n in node.children(OADR, "oadrReportRequest"))
        if not requests:
            raise node.error("oadrReportRequest is missing")
        return cls(node.string(PYLD, "requestID"), requests, node.optional_string(EI, "venID"))


@attrs.frozen
class _PendingReports(_Message):
    """An answer carrying the report requests still pending."""

    response: EiResponse
    pending: tuple[str, ...] = ()
    ven_id: str | None = None

    def write(self, element: etree._Element) -> None:
        self.response.write(element)
        pending = _sub(element, OADR, "oadrPendingReports")
        for request_id in self.pending:
            _sub(pending, EI, "reportRequestID", request_id)
        _opt(element, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "_PendingReports":
        return cls(EiResponse.read(node), node.child(OADR, "oadrPendingReports").strings(EI, "reportRequestID"),
                   node.optional_string(EI, "venID"))


@attrs.frozen
class CreatedReport(_PendingReports):
    """The answer to a create-report: the report requests now pending."""

    NAME: ClassVar[str] = "oadrCreatedReport"


@attrs.frozen
class UpdateReport(_Message):
    """Either side: readings for report requests."""

    NAME: ClassVar[str] = "oadrUpdateReport"
    request_id: str
    reports: tuple[Report, ...]
    ven_id: str | None = None

    def write(self, element: etree._Element) -> None:
        _sub(element, PYLD, "requestID", self.request_id)
        for report in self.reports:
            report.write(element)
        _opt(element, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "UpdateReport":
        return cls(node.string(PYLD, "requestID"), tuple(Report.read(n) for n in node.children(OADR, "oadrReport")),
                   node.optional_string(EI, "venID"))


@attrs.frozen
class CancelReport(_Message):
    """Either side: stop these report requests (``report_to_follow``: one
    last report still comes)."""

    NAME: ClassVar[str] = "oadrCancelReport"
    request_id: str
    report_request_ids: tuple[str, ...]
    report_to_follow: bool = False
    ven_id: str | None = None

    def write(self, element: etree._Element) -> None:
        _sub(element, PYLD, "requestID", self.request_id)
        for request_id in self.report_request_ids:
            _sub(element, EI, "reportRequestID", request_id)
        _sub(element, PYLD, "reportToFollow", self.report_to_follow)
        _opt(element, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "CancelReport":
        ids = node.strings(EI, "reportRequestID")
        if not ids:
            raise node.error("reportRequestID is missing")
        return cls(node.string(PYLD, "requestID"), ids, node.boolean(PYLD, "reportToFollow"),
                   node.optional_string(EI, "venID"))


@attrs.frozen
class UpdatedReport(_Message):
    """The answer to an update-report; it may cancel report requests."""

    NAME: ClassVar[str] = "oadrUpdatedReport"
    response: EiResponse
    cancel: CancelReport | None = None
    ven_id: str | None = None

    def write(self, element: etree._Element) -> None:
        self.response.write(element)
        if self.cancel is not None:
            self.cancel.write(_sub(element, OADR, CancelReport.NAME))
        _opt(element, EI, "venID", self.ven_id)

    @classmethod
    def read(cls, node: _Node) -> "UpdatedReport":
        cancel = node.optional(OADR, CancelReport.NAME)
        return cls(EiResponse.read(node), CancelReport.read(cancel) if cancel is not None else None,
                   node.optional_string(EI, "venID"))


@attrs.frozen
class CanceledReport(_PendingReports):
    """The answer to a cancel-report: the report requests still pending."""

    NAME: ClassVar[str] = "oadrCanceledReport"


Message: TypeAlias = (
    QueryRegistration | CreatePartyRegistration | CreatedPartyRegistration | CancelPartyRegistration
    | CanceledPartyRegistration | RequestReregistration | Poll | Response | DistributeEvent | CreatedEvent
    | RequestEvent | RegisterReport | RegisteredReport | CreateReport | CreatedReport | UpdateReport | UpdatedReport
    | CancelReport | CanceledReport | CreateOpt | CreatedOpt | CancelOpt | CanceledOpt
)

MESSAGES: dict[str, type[_Message]] = {cls.NAME: cls for cls in (
    QueryRegistration, CreatePartyRegistration, CreatedPartyRegistration, CancelPartyRegistration,
    CanceledPartyRegistration, RequestReregistration, Poll, Response, DistributeEvent, CreatedEvent, RequestEvent,
    RegisterReport, RegisteredReport, CreateReport, CreatedReport, UpdateReport, UpdatedReport, CancelReport,
    CanceledReport, CreateOpt, CreatedOpt, CancelOpt, CanceledOpt,
)}


# ------------------------------------------------------------------ parse and render


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_comments=True, remove_pis=True)


def parse_tree(body: bytes) -> etree._Element:
    """The body as an lxml tree, checked for what every payload must be:
    XML, no DOCTYPE, an ``oadrPayload`` root.  (``signature`` verifies on
    this tree; ``parse`` reads the message from it.)"""
    if isinstance(body, str):  # lxml refuses a str that declares its encoding
        body = body.encode("utf-8")
    if len(body) > MAX_BODY:
        raise MessageError("", f"the body is {len(body)} bytes, more than the {MAX_BODY} a message may be")
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as e:
        raise MessageError("", f"not well-formed XML ({e})") from None
    tree = root.getroottree()
    if tree.docinfo.doctype:
        raise MessageError("", "a DOCTYPE is not allowed in an OpenADR message")
    if root.tag != f"{{{OADR}}}oadrPayload":
        raise MessageError(_local(root.tag), f"the root element is {root.tag}, not oadrPayload in {OADR}")
    return root


def message_of(root: etree._Element) -> Message:
    """The message in a tree ``parse_tree`` returned."""
    node = _Node(root, "oadrPayload")
    signed = node.child(OADR, "oadrSignedObject")
    elements = [e for e in signed.element if isinstance(e.tag, str)]
    if len(elements) != 1:
        raise signed.error(f"{len(elements)} elements inside, one message expected")
    element = elements[0]
    name = _local(element.tag)
    cls = MESSAGES.get(name) if element.tag == f"{{{OADR}}}{name}" else None
    if cls is None:
        raise signed.error(f"{element.tag} is not a message jeisson reads "
                           f"(one of {', '.join(sorted(MESSAGES))} in {OADR})")
    return cast(Message, cls.read(_Node(element, name)))


def parse(body: bytes) -> Message:
    """An ``oadrPayload`` -> its message; ``MessageError`` names what was wrong."""
    return message_of(parse_tree(body))


def build(message: Message) -> etree._Element:
    """The ``oadrPayload`` tree of a message (unsigned)."""
    # Only ``oadr`` is declared above the message: XML signatures use
    # inclusive canonicalisation, which takes in the namespaces in scope, so
    # the signed object and the signature read the same alone and in place.
    root = etree.Element(f"{{{OADR}}}oadrPayload", nsmap={"oadr": OADR})
    signed = _sub(root, OADR, "oadrSignedObject")
    signed.set(f"{{{OADR}}}Id", SIGNED_OBJECT_ID)
    element = etree.SubElement(signed, f"{{{OADR}}}{message.NAME}", nsmap=NAMESPACES)
    element.set(f"{{{EI}}}schemaVersion", SCHEMA_VERSION)
    message.write(element)
    return root


def render(message: Message) -> bytes:
    """A message -> its ``oadrPayload`` (UTF-8, with an XML declaration)."""
    return serialize(build(message))


def serialize(root: etree._Element) -> bytes:
    body: bytes = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return body


def _local(tag: object) -> str:
    text = str(tag)
    return text.rsplit("}", 1)[-1]

