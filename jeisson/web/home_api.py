"""The home's JSON API: its owner's view of the home's own loads, and how
the owner changes them (a load's desired state, opting out and in).

A thin shell over ``Home``: each change holds at once and is answered
once the home's store has it (``Home.set_desired``, ``opt_out``,
``opt_in`` return ``durable()``).  Views (``status_view``, ``load_view``)
are pure functions of the home's state, also what its live push sends.
"""

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from jeisson.home.core import Home
from jeisson.store import StoreError
from jeisson.web import errors, measurements
from jeisson.web.config import MAX_ROWS
from jeisson.web.errors import UNAVAILABLE, ApiError
from jeisson.web.site import Call, Reply, Routes
from jeisson.wire.utc import format_utc

OFFLOAD_ABOVE = 500  # rows: a longer reply is encoded off the reactor


def load_view(home: Home, load_id: str) -> dict[str, Any]:
    """LOAD: one load as its owner sees it."""
    load = home.loads[load_id]
    return {"id": load.id, "rated_w": load.config.rated_w, "on": load.on, "desired": load.desired,
            "mode": load.mode(home.clock.seconds()), "measured_w": load.measured_w, "critical": load.config.critical,
            "board": load.config.actuator}


def status_view(home: Home) -> dict[str, Any]:
    """The home's STATUS."""
    budget = home.budget
    return {
        "id": home.config.id,
        "at": format_utc(home.clock.seconds()),
        "aggregator_connected": home.uplink is not None,
        "budget_w": None if budget is None else budget.budget_w,
        "budget_end": None if budget is None else format_utc(budget.end),
        "event": None if budget is None else budget.event,
        "drawn_w": home.drawn_w(),
        "measured_w": home.measured_w(),
        "opted_out": home.opted_out(),
        "opt_out": {"all": home.opt_out_all, "events": sorted(home.opt_out_events)},
        "boards": [{"id": board, "connected": board in home.boards} for board in sorted(home.config.actuators)],
    }


class HomeApi:
    """The handlers of the home's API."""

    def __init__(self, home: Home, max_rows: int = MAX_ROWS, openapi: Any = None):
        self.home = home
        self.max_rows = max_rows
        self.openapi = openapi

    def routes(self) -> Routes:
        routes = Routes()
        routes.get("/status", self.status)
        routes.get("/loads", self.loads)
        routes.get("/loads/{id}", self.load)
        routes.add("PUT", "/loads/{id}", self.set_load)
        routes.add("POST", "/opt-out", self.opt_out)
        routes.add("POST", "/opt-in", self.opt_in)
        routes.get("/why", self.why)
        routes.get("/measurements", self.measurements)
        routes.get("/openapi.json", self.openapi_document)
        return routes

    def status(self, call: Call) -> dict[str, Any]:
        errors.query_only(call.args, ())
        return status_view(self.home)

    def loads(self, call: Call) -> dict[str, Any]:
        errors.query_only(call.args, ())
        return {"loads": [load_view(self.home, load_id) for load_id in sorted(self.home.loads)]}

    def _load_id(self, load_id: str, field: str | None = None) -> str:
        if load_id not in self.home.loads:
            message = f"home {self.home.config.id} has no load {load_id!r} (its loads: {', '.join(self.home.loads)})"
            if field is not None:
                raise errors.bad_field(field, message)
            raise errors.not_found(message)
        return load_id

    def load(self, call: Call) -> dict[str, Any]:
        return load_view(self.home, self._load_id(call.param("id")))

    @staticmethod
    def _durable(d: "Deferred[Any]") -> "Deferred[Any]":
        def not_stored(failure: Failure) -> None:
            failure.trap(StoreError)
            raise ApiError(503, UNAVAILABLE, f"the setting holds now but could not be stored "
                                             f"({failure.getErrorMessage()}): it would be lost in a restart")

        return d.addErrback(not_stored)

    def set_load(self, call: Call) -> "Deferred[dict[str, Any]]":
        load_id = self._load_id(call.param("id"))
        body = errors.json_body(call.body)
        errors.only(body, ("desired",))
        if "desired" not in body:
            raise errors.missing("desired", "desired: true (on outside events) or false")
        desired = errors.boolean(body["desired"], "desired")
        d = self._durable(self.home.set_desired(load_id, desired))
        return d.addCallback(lambda _: load_view(self.home, load_id))

    def _event(self, call: Call) -> str | None:
        body = errors.json_body(call.body) if call.body.strip() else {}
        errors.only(body, ("event",))
        if body.get("event") is None:
            return None
        return errors.ident(body["event"], "event")

    def opt_out(self, call: Call) -> "Deferred[dict[str, Any]]":
        event = self._event(call)
        d = self._durable(self.home.opt_out(event))
        return d.addCallback(lambda _: {"opted_out": True, "event": event, **self._opt()})

    def opt_in(self, call: Call) -> "Deferred[dict[str, Any]]":
        event = self._event(call)
        d = self._durable(self.home.opt_in(event))
        return d.addCallback(lambda _: {"opted_out": False, "event": event, **self._opt()})

    def _opt(self) -> dict[str, Any]:
        return {"opt_out": {"all": self.home.opt_out_all, "events": sorted(self.home.opt_out_events)}}

    def why(self, call: Call) -> "Deferred[dict[str, Any]]":
        errors.query_only(call.args, ("load", "at"))
        load_id = errors.query_one(call.args, "load")
        if not load_id:
            raise errors.missing("load", "load: the load's id")
        self._load_id(load_id, "load")
        now = self.home.clock.seconds()
        at = errors.query_moment(call.args, "at", now)
        moment = now if at is None else at
        if self.home.memory is None:
            raise ApiError(503, UNAVAILABLE, f"home {self.home.config.id} keeps no store ([store] path = none): "
                                             "no journal")
        memory = self.home.memory
        return memory.why_view(load_id, moment).addCallback(self._why_view, load_id, moment)

    def _why_view(self, view: dict[str, Any], load_id: str, moment: float) -> dict[str, Any]:
        chain = [{**link, "at": None if link["at"] is None else format_utc(link["at"])} for link in view["chain"]]
        return {"home": self.home.config.id, "load": load_id, "at": format_utc(moment), "on": view["on"],
                "chain": chain, "text": view["text"]}

    def measurements(self, call: Call) -> "Deferred[Reply]":
        errors.query_only(call.args, measurements.QUERY)
        store = self.home.store
        if store is None:
            raise ApiError(503, UNAVAILABLE, f"home {self.home.config.id} keeps no store ([store] path = none): no "
                                             "measurements are kept")
        asked = measurements.read_range(call, self.home.clock.seconds())
        limit = self.max_rows + 1  # one row more than a reply holds says that it is cut
        d = self.home.durable().addCallback(lambda _: store.measurements(None, asked.since, asked.until, limit=limit))
        return d.addCallback(measurements.samples_reply, asked.as_csv, self.max_rows, OFFLOAD_ABOVE, "subject")

    def openapi_document(self, call: Call) -> Any:
        if self.openapi is None:
            from jeisson.web.openapi import document

            return document("home")
        return self.openapi
