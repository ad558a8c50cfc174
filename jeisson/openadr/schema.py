"""Validation against the OpenADR 2.0b XML schema, where its XSDs are at hand.

jeisson does not ship the 2.0b XSDs.  The OpenADR Alliance publishes them
to those who accept its terms; the copies OpenLEADR carries say (in their
``LICENSES.txt``) that most of them bear no licence and are included "in
good faith".  Only the W3C (``xmldsig11``) and OASIS (``siscale``) files
come with terms that allow redistribution, and the set is useless without
the Alliance's files.  So a schema is loaded from a directory the operator
names (the Alliance's download, unpacked), or from an installed OpenLEADR
(``openleadr/schema/``), which the tests use.

``parse`` in ``messages`` does not need the schema: it reads what a VEN needs
and names what is missing.  The schema is a stricter second opinion: the
tests check that everything jeisson renders is valid 2.0b, and a VEN can
check what a VTN sends (``Schema.check``).
"""

import importlib.util
import os

import attrs
from lxml import etree  # type: ignore[import-untyped]  # no stubs in the venv (types-lxml)

ENTRY = "oadr_20b.xsd"


class SchemaError(ValueError):
    """A payload the 2.0b schema refuses: ``line`` and the schema's words."""

    def __init__(self, line: int, what: str) -> None:
        super().__init__(f"line {line}: {what}" if line else what)
        self.line = line
        self.what = what


def installed_directory() -> str | None:
    """The schema directory of an installed OpenLEADR, without importing it
    (importing it starts its logging and imports aiohttp); None if absent."""
    try:
        spec = importlib.util.find_spec("openleadr")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        directory = os.path.join(location, "schema")
        if os.path.isfile(os.path.join(directory, ENTRY)):
            return directory
    return None


@attrs.frozen
class Schema:
    """The 2.0b schema, loaded once (a second or so): ``check(body)``."""

    directory: str
    xml_schema: etree.XMLSchema = attrs.field(repr=False)

    def check(self, body: bytes) -> None:
        """Raise ``SchemaError`` (the first complaint, with its line) unless
        ``body`` is a valid 2.0b payload."""
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        try:
            document = etree.fromstring(body, parser)
        except etree.XMLSyntaxError as e:
            raise SchemaError(0, f"not well-formed XML ({e})") from None
        if not self.xml_schema.validate(document):
            error = self.xml_schema.error_log.last_error
            raise SchemaError(error.line, error.message)

    def valid(self, body: bytes) -> bool:
        try:
            self.check(body)
        except SchemaError:
            return False
        return True


def load(directory: str | None = None) -> Schema:
    """The schema from ``directory`` (holding ``oadr_20b.xsd`` and the files
    it imports), else from an installed OpenLEADR.  ``FileNotFoundError``
    names where it looked; ``SchemaError`` if the XSDs do not load."""
    where = directory or installed_directory()
    if where is None:
        raise FileNotFoundError("no OpenADR 2.0b schema: name the directory holding oadr_20b.xsd "
                                "(the OpenADR Alliance's XSDs), or install openleadr")
    entry = os.path.join(where, ENTRY)
    if not os.path.isfile(entry):
        raise FileNotFoundError(f"{entry}: no such file (the OpenADR 2.0b schema's entry point)")
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        return Schema(where, etree.XMLSchema(etree.parse(entry, parser)))
    except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as e:
        raise SchemaError(0, f"{entry}: the schema does not load ({e})") from None
