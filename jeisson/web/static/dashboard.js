// The operator's dashboard: everything arrives on the server's push
// (/api/v1/stream: a snapshot, then rounds, events, power and the homes
// that changed, at most 250 a second); the page asks the API for the rows
// it shows (GET /api/v1/homes?id=...) at each round and when the page or
// the filter changes, so those are current within a round however many
// homes there are, and when the operator acts (an event added, modified or
// cancelled; a load's audit chain).
"use strict";

(() => {
  const {el, byId, watts, duration, parseUtc, clock, call, stream, showWhy} = Jeisson;

  const PLOT_WINDOW_S = 600;   // the plot shows the last ten minutes
  const PAGE_SIZE = 50;        // homes per page: 10,000 homes stay usable
  const ROUNDS_SHOWN = 20;

  const state = {
    status: null,
    homes: new Map(),          // id -> HOME
    ids: [],                   // every id, sorted
    events: [],
    rounds: [],                // newest first
    series: [],                // {t, limit, committed, measured}
    marks: [],                 // {t, number, within} a round's end on the plot
    offset: 0,                 // server's clock less this browser's (s)
    page: 0,
  };

  const now = () => Date.now() / 1000 + state.offset;

  // ------------------------------------------------------------ figures

  function showFigures() {
    const s = state.status;
    if (!s) return;
    byId("limit").textContent = s.limit_w === null ? "none" : watts(s.limit_w);
    byId("committed").textContent = watts(s.committed_w);
    byId("measured").textContent = watts(s.measured_w);
    byId("homes-count").textContent = `${s.homes.connected} / ${s.homes.total}` + (s.homes.silent ? ` (${s.homes.silent} silent)` : "");
    byId("negotiation").textContent = s.negotiation ? s.negotiation.mode : "–";
    byId("rounds-run").textContent = s.rounds_run;
    const verdict = byId("verdict");
    if (s.limit_w === null) {
      verdict.dataset.verdict = "none";
      verdict.textContent = "no event in force";
    } else if (s.within_limit) {
      verdict.dataset.verdict = "within";
      verdict.textContent = "within limit";
    } else {
      // The server's verdict: committed or measured above the limit (in total or on a feeder).
      verdict.dataset.verdict = "over";
      verdict.textContent = `OVER LIMIT by ${watts(s.over_w)}`;
    }
  }

  function power(p) {
    // The status's figures (the limit, committed, measured, the verdict, the
    // negotiation, the homes' counts): the rest of the status is kept.
    if (state.status) Object.assign(state.status, p);
    addPoint(parseUtc(p.at), p.limit_w, p.committed_w, p.measured_w);
    showFigures();
  }

  // --------------------------------------------------------------- plot

  function addPoint(t, limit, committed, measured) {
    state.series.push({t, limit, committed, measured});
    const cut = t - PLOT_WINDOW_S * 2;
    while (state.series.length > 2 && state.series[0].t < cut) state.series.shift();
    drawPlot();
  }

  function drawPlot() {
    const canvas = byId("plot");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 1000, height = canvas.clientHeight || 280;
    if (canvas.width !== Math.round(width * ratio)) { canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio); }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 64, right = 12, top = 10, bottom = 24;
    // Ten minutes, or since the page opened (at least a minute): the lines move from the start.
    const t1 = now();
    const first = state.series.length ? state.series[0].t : t1;
    const span = Math.min(PLOT_WINDOW_S, Math.max(60, t1 - first + 10));
    const t0 = t1 - span;
    byId("plot-window").textContent = span >= 120 ? `${Math.round(span / 60)} min` : `${Math.round(span)} s`;
    const shown = state.series.filter((p) => p.t >= t0 - 60);
    let most = 1000;
    for (const p of shown) most = Math.max(most, p.limit || 0, p.committed || 0, p.measured || 0);
    most *= 1.1;
    const x = (t) => left + (t - t0) / (t1 - t0) * (width - left - right);
    const y = (w) => top + (1 - w / most) * (height - top - bottom);
    // Axes and grid.
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#6b7280";
    g.strokeStyle = "#e5e7eb";
    g.lineWidth = 1;
    const step = niceStep(most / 5);
    for (let w = 0; w <= most; w += step) {
      g.beginPath(); g.moveTo(left, y(w)); g.lineTo(width - right, y(w)); g.stroke();
      g.fillText(watts(w), 4, y(w) + 4);
    }
    const tick = span <= 120 ? 15 : span <= 300 ? 60 : 120;
    for (let t = Math.ceil(t0 / tick) * tick; t <= t1; t += tick) {
      g.beginPath(); g.moveTo(x(t), top); g.lineTo(x(t), height - bottom); g.stroke();
      const label = new Date(t * 1000).toISOString().slice(11, tick < 60 ? 19 : 16);
      g.fillText(label, x(t) - (tick < 60 ? 24 : 14), height - 6);
    }
    // Rounds: a tick at each round's end, red when it was over.
    for (const m of state.marks) {
      if (m.t < t0) continue;
      g.strokeStyle = m.within ? "#c7d2fe" : "#fca5a5";
      g.beginPath(); g.moveTo(x(m.t), top); g.lineTo(x(m.t), height - bottom); g.stroke();
    }
    // Each series as steps, held to now.
    // Measured wide and under, committed narrow on top: both show where they agree.
    const series = [["limit", "#dc2626", [6, 4], 2], ["measured", "#059669", [], 4], ["committed", "#2563eb", [], 1.5]];
    for (const [key, colour, dash, lineWidth] of series) {
      g.strokeStyle = colour; g.lineWidth = lineWidth; g.setLineDash(dash);
      g.beginPath();
      let started = false, last = null;
      for (const p of shown) {
        const w = p[key];
        if (w === null || w === undefined) { started = false; last = null; continue; }
        const px = Math.max(left, x(p.t)), py = y(w);
        if (!started) { g.moveTo(px, py); started = true; } else { g.lineTo(px, y(last)); g.lineTo(px, py); }
        last = w;
      }
      if (started && last !== null) g.lineTo(x(t1), y(last));
      g.stroke();
      g.setLineDash([]);
    }
    canvas.dataset.points = String(state.series.length);
    canvas.dataset.rounds = String(state.marks.length);
    canvas.dataset.last = state.series.length ? String(state.series[state.series.length - 1].t) : "";
  }

  function niceStep(raw) {
    const power10 = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * power10 >= raw) return m * power10;
    return 10 * power10;
  }

  // ------------------------------------------------------------- events

  function eventState(e, t) {
    if (e.state === "cancelled") return "cancelled";
    const start = parseUtc(e.start) - (e.start_window_s || 0), end = parseUtc(e.end);
    if (t >= end) return "ended";
    if (t >= start) return "in-force";
    return "scheduled";
  }

  function countdown(e, t) {
    const start = parseUtc(e.start), end = parseUtc(e.end);
    if (t < start) return `starts in ${duration(start - t)}`;
    if (t < end) return `ends in ${duration(end - t)}`;
    return "over";
  }

  function showEvents() {
    const t = now();
    const body = byId("events").tBodies[0];
    body.replaceChildren(...state.events.map((e) => el("tr", {dataset: {event: e.id}, class: "state-" + eventState(e, t)},
      el("td", {text: e.id}), el("td", {text: watts(e.limit_w)}),
      el("td", {text: e.start}), el("td", {text: e.end}),
      el("td", {class: "state", text: eventState(e, t)}),
      el("td", {class: "countdown", text: countdown(e, t)}),
      el("td", {}, el("button", {type: "button", class: "small", text: "edit", onclick: () => fillForm(e)})))));
    if (!state.events.length) body.append(el("tr", {}, el("td", {colspan: 7, class: "muted", text: "no events"})));
    showTimeline(t);
  }

  function tick() {
    const t = now();
    for (const row of byId("events").tBodies[0].rows) {
      const e = state.events.find((x) => x.id === row.dataset.event);
      if (!e) continue;
      row.querySelector(".countdown").textContent = countdown(e, t);
      const s = eventState(e, t);
      row.querySelector(".state").textContent = s;
      row.className = "state-" + s;
    }
    showTimeline(t);
    drawPlot();
  }

  // The next hour (or to the last event's end, within two days), ten minutes behind.
  function showTimeline(t) {
    const box = byId("timeline");
    const t0 = t - 600;
    let t1 = t + 3600;
    for (const e of state.events) {
      const end = parseUtc(e.end) + (e.end_window_s || 0);
      if (end > t) t1 = Math.max(t1, Math.min(end + (end - t0) * 0.1, t + 48 * 3600));
    }
    const pos = (v) => ((Math.min(Math.max(v, t0), t1) - t0) / (t1 - t0) * 100).toFixed(3) + "%";
    const bars = state.events.map((e) => {
      const bar = el("div", {class: "bar state-" + eventState(e, t), title: `${e.id}: ${watts(e.limit_w)} ${e.start} → ${e.end}`},
        el("span", {text: `${e.id} ${watts(e.limit_w)}`}));
      const a = parseUtc(e.start) - (e.start_window_s || 0), b = parseUtc(e.end) + (e.end_window_s || 0);
      bar.style.left = pos(a);
      bar.style.width = `calc(${pos(b)} - ${pos(a)})`;
      return bar;
    });
    const nowLine = el("div", {class: "now"});
    nowLine.style.left = pos(t);
    box.replaceChildren(...bars, nowLine);
  }

  // --------------------------------------------------------------- form

  const form = byId("event-form");
  const fields = ["id", "limit_kw", "start", "end", "start_window_s", "end_window_s"];
  const numeric = new Set(["limit_kw", "start_window_s", "end_window_s"]);
  // What the API names that the form writes otherwise.
  const formField = {limit_w: "limit_kw"};

  function fillForm(e) {
    form.elements.id.value = e.id;
    form.elements.limit_kw.value = e.limit_w / 1000;
    form.elements.start.value = e.start;
    form.elements.end.value = e.end;
    form.elements.start_window_s.value = e.start_window_s || "";
    form.elements.end_window_s.value = e.end_window_s || "";
    clearErrors();
  }

  function clearErrors() {
    for (const span of form.querySelectorAll(".error")) span.textContent = "";
    for (const input of form.querySelectorAll("input")) input.removeAttribute("aria-invalid");
    byId("event-result").textContent = "";
    byId("event-result").className = "result";
  }

  function fieldError(field, message) {
    const span = form.querySelector(`.error[data-field="${formField[field] || field}"]`);
    if (span) {
      span.textContent = message;
      const input = form.elements[formField[field] || field];
      if (input) input.setAttribute("aria-invalid", "true");
      return true;
    }
    return false;
  }

  function body(all) {
    const out = {};
    for (const name of fields) {
      if (name === "id" && !all) continue;
      const raw = form.elements[name].value.trim();
      if (raw === "") continue;
      // A number where one is expected; anything else as typed, for the API to name.
      out[name] = numeric.has(name) && raw !== "" && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
    }
    return out;
  }

  async function act(method) {
    clearErrors();
    const id = form.elements.id.value.trim();
    if (!id) { fieldError("id", "an event id is needed"); return; }
    const result = byId("event-result");
    try {
      let reply;
      if (method === "POST") reply = await call("POST", "/events", body(true));
      else if (method === "PUT") reply = await call("PUT", "/events/" + encodeURIComponent(id), body(false));
      else reply = await call("DELETE", "/events/" + encodeURIComponent(id));
      result.className = "result ok";
      result.textContent = `${id}: ${reply.verdict}` + (reply.detail ? ` (${reply.detail})` : "");
    } catch (e) {
      if (!(e.field && fieldError(e.field, e.message))) {
        result.className = "result error";
        result.textContent = `${e.code}: ${e.message}`;
      } else {
        result.className = "result error";
        result.textContent = `${e.code}: see ${formField[e.field] || e.field}`;
      }
    }
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); act("POST"); });
  byId("event-modify").addEventListener("click", () => act("PUT"));
  byId("event-cancel").addEventListener("click", () => act("DELETE"));

  // -------------------------------------------------------------- homes

  let homesQueued = false;
  function queueHomes() {
    if (homesQueued) return;
    homesQueued = true;
    requestAnimationFrame(() => { homesQueued = false; showHomes(); });
  }

  function visibleIds() {
    const text = byId("home-filter").value.trim().toLowerCase();
    const show = byId("home-show").value;
    return state.ids.filter((id) => {
      if (text && !id.toLowerCase().includes(text)) return false;
      if (show === "all") return true;
      const h = state.homes.get(id);
      if (show === "connected") return h.connected;
      if (show === "away") return !h.connected;
      return h.silent;
    });
  }

  function linkText(h) {
    if (!h.connected) return "away";
    if (h.silent) return "silent";
    return "connected" + (h.link && h.link.since ? " since " + clock(h.link.since) : "");
  }

  // The ids on the page shown, and how many pass the filter.
  function pageIds() {
    const ids = visibleIds();
    const pages = Math.max(1, Math.ceil(ids.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    return {ids, pages, shown: ids.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE)};
  }

  // The rows shown, as the API has them now: at each round and when the
  // page or the filter changes (one request at a time; a change meanwhile
  // asks once more when it answers).  The push alone takes up to a round's
  // changes / 250 seconds to reach a row: 40 s at 10,000 homes.
  let refreshing = false;
  let refreshAgain = false;
  async function refreshPage() {
    if (refreshing) { refreshAgain = true; return; }
    const {shown} = pageIds();
    if (!shown.length) return;
    refreshing = true;
    try {
      const reply = await call("GET", "/homes?" + new URLSearchParams(shown.map((id) => ["id", id])).toString());
      takeHomes(reply.homes);
    } catch (e) {
      // The aggregator away: the link badge says so, the next round asks again.
    } finally {
      refreshing = false;
      if (refreshAgain) { refreshAgain = false; refreshPage(); }
    }
  }

  function showHomes() {
    const {ids, pages, shown} = pageIds();
    byId("page-info").textContent = `page ${state.page + 1} of ${pages} · ${ids.length} homes`;
    const body = byId("homes").tBodies[0];
    body.replaceChildren(...shown.map((id) => {
      const h = state.homes.get(id);
      const loads = (h.loads || []).map((load) => el("button", {
        type: "button", class: "load " + (load.on ? "on" : "off") + (load.critical ? " critical" : ""),
        title: `${load.id}: ${load.on ? "on" : "off"}, ${watts(load.rated_w)}, ${load.mode}, priority ${load.priority}` +
          (load.wanted ? "" : ", not wanted"),
        dataset: {home: h.id, load: load.id},
        text: load.id,
        onclick: () => showWhy({home: h.id, load: load.id}, `why is ${h.id}'s ${load.id} ${load.on ? "on" : "off"}?`),
      }));
      return el("tr", {dataset: {home: h.id}, class: h.connected ? (h.silent ? "silent" : "") : "away"},
        el("td", {text: h.id}), el("td", {class: "link", text: linkText(h)}),
        el("td", {text: watts(h.demand_w)}),
        el("td", {class: "budget", text: h.budget_w === null || h.budget_w === undefined ? "–" : watts(h.budget_w)}),
        el("td", {text: watts(h.committed_w)}), el("td", {text: watts(h.measured_w)}),
        el("td", {class: "loads"}, ...loads));
    }));
  }

  function turnTo(page) { state.page = page; showHomes(); refreshPage(); }
  byId("home-filter").addEventListener("input", () => turnTo(0));
  byId("home-show").addEventListener("change", () => turnTo(0));
  byId("page-prev").addEventListener("click", () => turnTo(Math.max(0, state.page - 1)));
  byId("page-next").addEventListener("click", () => turnTo(state.page + 1));

  function takeHomes(list) {
    let added = false;
    for (const h of list) {
      if (!state.homes.has(h.id)) added = true;
      state.homes.set(h.id, h);
    }
    if (added) state.ids = [...state.homes.keys()].sort();
    queueHomes();
  }

  // ------------------------------------------------------------- rounds

  function showRounds() {
    const body = byId("rounds").tBodies[0];
    body.replaceChildren(...state.rounds.map((r) => el("tr", {class: r.within_limit ? "" : "over", dataset: {round: r.number}},
      el("td", {text: r.number}), el("td", {text: r.event}), el("td", {text: watts(r.limit_w)}),
      el("td", {text: watts(r.committed_w + r.unknown_w)}), el("td", {text: watts(r.measured_w)}),
      el("td", {class: "verdict", text: r.within_limit ? "within" : "OVER"}),
      el("td", {text: r.homes === undefined ? "–" : r.homes}),
      el("td", {text: r.started && r.finished ? ((parseUtc(r.finished) - parseUtc(r.started)) * 1000).toFixed(0) + " ms" : "–"}),
      el("td", {text: clock(r.finished)}))));
    if (!state.rounds.length) body.append(el("tr", {}, el("td", {colspan: 9, class: "muted", text: "no rounds yet"})));
  }

  function round(r) {
    state.rounds = [r, ...state.rounds.filter((x) => x.number !== r.number)].slice(0, ROUNDS_SHOWN);
    state.marks.push({t: parseUtc(r.finished), number: r.number, within: r.within_limit});
    if (state.marks.length > 500) state.marks.shift();
    if (state.status) { state.status.rounds_run += 1; state.status.last_round = r; }
    showRounds();
    showFigures();
    drawPlot();
    refreshPage();
  }

  // ------------------------------------------------------------- stream

  function snapshot(s) {
    state.status = s.status;
    state.offset = parseUtc(s.status.at) - Date.now() / 1000;
    state.homes = new Map();
    state.ids = [];
    takeHomes(s.homes);
    state.events = s.events;
    state.rounds = (s.rounds || []).slice().reverse().slice(0, ROUNDS_SHOWN);
    for (const r of s.rounds || []) state.marks.push({t: parseUtc(r.finished), number: r.number, within: r.within_limit});
    addPoint(parseUtc(s.status.at), s.status.limit_w, s.status.committed_w, s.status.measured_w);
    showFigures();
    showEvents();
    showRounds();
  }

  Jeisson.closeWhyOnClick();
  stream({
    snapshot,
    power,
    round,
    events: (e) => { state.events = e.events; showEvents(); },
    homes: (h) => takeHomes(h.homes),
  });
  setInterval(tick, 1000);
  window.addEventListener("resize", drawPlot);
})();
