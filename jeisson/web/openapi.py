"""The OpenAPI 3.1 documents of the two APIs, shipped in the package.

``jeisson/web/openapi/aggregator.json`` and ``home.json`` describe every
path, body and error of docs/api.rst; each process serves its own at
``GET /api/v1/openapi.json``.  ``document(role)`` reads one (cached).
"""

import functools
import json
from importlib import resources
from typing import Any

ROLES = ("aggregator", "home")


@functools.cache
def document(role: str) -> dict[str, Any]:
    """The OpenAPI document of ``role`` (``aggregator`` or ``home``)."""
    if role not in ROLES:
        raise ValueError(f"no OpenAPI document for {role!r}: {', '.join(ROLES)}")
    text = resources.files("jeisson.web").joinpath("openapi", f"{role}.json").read_text(encoding="utf-8")
    value = json.loads(text)
    assert isinstance(value, dict)
    return value
