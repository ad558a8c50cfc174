// The home owner's page: the home's own stream (/api/v1/stream), and the
// owner's settings through the home's API (a load wanted on or off, opting
// out of events or back in), each stored before the home answers.
"use strict";

(() => {
  const {el, byId, watts, duration, parseUtc, clock, call, stream, showWhy} = Jeisson;

  const state = {status: null, loads: new Map(), offset: 0};
  const now = () => Date.now() / 1000 + state.offset;

  function showStatus() {
    const s = state.status;
    if (!s) return;
    byId("home-id").textContent = s.id;
    document.title = `jeisson · ${s.id}`;
    const uplink = byId("uplink");
    uplink.textContent = s.aggregator_connected ? "aggregator linked" : "aggregator away";
    uplink.dataset.state = s.aggregator_connected ? "live" : "reconnecting";
    byId("event").textContent = s.event || "none";
    byId("budget").textContent = s.budget_w === null ? "none" : watts(s.budget_w);
    byId("budget-end").textContent = s.budget_end ? `${clock(s.budget_end)} (in ${duration(parseUtc(s.budget_end) - now())})` : "–";
    byId("drawn").textContent = watts(s.drawn_w);
    byId("measured").textContent = watts(s.measured_w);
    const boards = s.boards || [];
    byId("boards").textContent = `${boards.filter((b) => b.connected).length} / ${boards.length}`;
    byId("opted").textContent = s.opted_out ? "You have opted out: your loads run as you set them." :
      "You take part: during an event your home keeps to its budget.";
  }

  function showLoads() {
    const body = byId("loads").tBodies[0];
    const loads = [...state.loads.values()].sort((a, b) => a.id.localeCompare(b.id));
    body.replaceChildren(...loads.map((load) => el("tr", {dataset: {load: load.id}},
      el("td", {text: load.id + (load.critical ? " (critical)" : "")}),
      el("td", {class: "state", text: load.on === null ? "unknown" : (load.on ? "on" : "off")}),
      el("td", {}, el("button", {type: "button", class: "load " + (load.desired ? "on" : "off"), dataset: {load: load.id},
        text: load.desired ? "on" : "off", title: "click to want it " + (load.desired ? "off" : "on"),
        onclick: () => setDesired(load.id, !load.desired)})),
      el("td", {text: watts(load.rated_w)}), el("td", {text: watts(load.measured_w)}),
      el("td", {text: load.mode}), el("td", {text: load.board}),
      el("td", {}, el("button", {type: "button", class: "small why", text: "why?",
        onclick: () => showWhy({load: load.id}, `why is ${load.id} ${load.on ? "on" : "off"}?`)})))));
  }

  async function setDesired(id, desired) {
    const result = byId("load-result");
    result.textContent = "";
    try {
      const load = await call("PUT", "/loads/" + encodeURIComponent(id), {desired});
      state.loads.set(load.id, load);
      showLoads();
      result.className = "result ok";
      result.textContent = `${id}: you want it ${desired ? "on" : "off"}`;
    } catch (e) {
      result.className = "result error";
      result.textContent = `${id}: ${e.message}`;
    }
  }

  async function opt(path) {
    const result = byId("opt-result");
    try {
      await call("POST", path, {});
      result.className = "result ok";
      result.textContent = "saved";
    } catch (e) {
      result.className = "result error";
      result.textContent = e.message;
    }
  }

  byId("opt-out").addEventListener("click", () => opt("/opt-out"));
  byId("opt-in").addEventListener("click", () => opt("/opt-in"));

  function switched(s) {
    const list = byId("switches");
    list.prepend(el("li", {class: s.ok ? "" : "error",
      text: `${clock(s.at)} ${s.load} ${s.on ? "on" : "off"}${s.ok ? "" : " FAILED: " + s.error} (${(s.why || []).join(", ")})`}));
    while (list.children.length > 50) list.lastChild.remove();
  }

  Jeisson.closeWhyOnClick();
  stream({
    snapshot: (s) => {
      state.status = s.status;
      state.loads = new Map(s.loads.map((l) => [l.id, l]));
      showStatus();
      showLoads();
    },
    status: (s) => { state.status = s; showStatus(); },
    loads: (l) => { for (const load of l.loads) state.loads.set(load.id, load); showLoads(); },
    switch: switched,
  });
  setInterval(showStatus, 1000);
})();
