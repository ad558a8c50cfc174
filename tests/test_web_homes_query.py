"""``GET /api/v1/homes`` by id and by page (what the dashboard asks for
the rows it shows), and the reason phrase of a 422: a real Aggregator on
a task.Clock with fake homes, each request through the whole Site on a
StringTransport (tests/http_memory.py)."""

import pytest

from jeisson.web.openapi import document
from tests.http_memory import request
from tests.peers import Net
from tests.test_web_api import CONFIG, H1_LOADS, H2_LOADS, api_site

pytestmark = pytest.mark.usefixtures("logs")


@pytest.fixture
def site():
    net = Net(CONFIG)
    net.home("h1", *H1_LOADS)
    net.home("h2", *H2_LOADS)
    return api_site(net)[1]


def get(site, path):
    response = request(site, "GET", path)
    assert response.done, response
    return response


def ids(response) -> tuple[list[str], int]:
    assert response.status == 200, response
    body = response.json()
    return [h["id"] for h in body["homes"]], body["total"]


def test_homes_by_id_come_in_the_order_asked_unknown_ones_left_out(site):
    assert ids(get(site, "/api/v1/homes?id=h2&id=nobody&id=h1&id=h2")) == (["h2", "h1"], 2)
    assert ids(get(site, "/api/v1/homes?id=h2&connected=false")) == ([], 0)


def test_homes_by_page_say_how_many_matched(site):
    assert ids(get(site, "/api/v1/homes")) == (["h1", "h2"], 2)
    assert ids(get(site, "/api/v1/homes?offset=1&limit=1")) == (["h2"], 2)
    assert ids(get(site, "/api/v1/homes?limit=1")) == (["h1"], 2)
    assert ids(get(site, "/api/v1/homes?offset=5")) == ([], 2)


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("offset=-1", "offset"), ("limit=x", "limit"),
    ("&".join(f"id=h{i}" for i in range(501)), "id"),
])
def test_a_bad_page_or_too_many_ids_is_a_422_naming_the_field_with_its_phrase(site, query, field):
    response = get(site, "/api/v1/homes?" + query)
    assert response.status == 422
    assert response.json()["error"]["field"] == field
    status_line = response.transport.value().split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 422 Unprocessable Content"


def test_the_openapi_document_names_the_new_parameters():
    homes = document("aggregator")["paths"]["/homes"]["get"]
    assert {p["name"] for p in homes["parameters"]} == {"connected", "id", "offset", "limit"}
    assert "total" in homes["responses"]["200"]["content"]["application/json"]["schema"]["required"]
