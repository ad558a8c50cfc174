// What both pages share: figures as text, the API's calls, the live
// stream, the audit chain's dialog.  Plain script, no build step: it sets
// one global, Jeisson.
"use strict";

const Jeisson = (() => {
  const API = "/api/v1";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function byId(id) { return document.getElementById(id); }

  function watts(w) {
    if (w === null || w === undefined) return "–";
    if (Math.abs(w) >= 1000) return (w / 1000).toFixed(2) + " kW";
    return Math.round(w) + " W";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    let s = Math.max(0, Math.round(seconds));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return `${d}d ${h}h ${m}m`;
    if (h) return `${h}h ${m}m ${s}s`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }

  function parseUtc(text) { return text ? Date.parse(text) / 1000 : null; }

  function clock(text) {
    if (!text) return "–";
    const date = new Date(text);
    return date.toISOString().slice(11, 19) + "Z";
  }

  // The API's error body: {"error": {"status", "code", "field"?, "message"}}.
  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || "internal";
      this.field = error.field || null;
    }
  }

  async function call(method, path, body) {
    const options = {method, headers: {"Accept": "application/json"}, credentials: "same-origin"};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API + path, options);
    } catch (e) {
      throw new ApiError(0, {error: {message: "cannot reach the server: " + e.message}});
    }
    let parsed = null;
    const text = await response.text();
    if (text) {
      try { parsed = JSON.parse(text); } catch (e) { parsed = null; }
    }
    if (!response.ok) throw new ApiError(response.status, parsed);
    return parsed;
  }

  // The badge at the top right (#link): live, reconnecting, closed.
  function linkState(text) {
    const badge = byId("link");
    badge.dataset.state = text;
    badge.textContent = text;
  }

  // The server's push: EventSource reconnects by itself (and gets a new
  // snapshot); the badge tells whether the page is live.
  function stream(handlers, state = linkState) {
    const source = new EventSource(API + "/stream");
    source.addEventListener("open", () => state("live"));
    source.addEventListener("error", () => state(source.readyState === EventSource.CLOSED ? "closed" : "reconnecting"));
    for (const [name, handler] of Object.entries(handlers)) {
      source.addEventListener(name, (message) => {
        let data;
        try { data = JSON.parse(message.data); } catch (e) { console.warn("bad push", name); return; }
        handler(data);
      });
    }
    return source;
  }

  // The audit chain of a load: why it is on or off now.
  async function showWhy(query, title) {
    const dialog = byId("why");
    const body = byId("why-body");
    byId("why-title").textContent = title;
    body.replaceChildren(el("p", {class: "muted", text: "asking…"}));
    if (!dialog.open) dialog.showModal();
    try {
      const why = await call("GET", "/why?" + new URLSearchParams(query).toString());
      const items = (why.chain || []).map((link) => el("li", {class: "chain-" + link.kind},
        el("span", {class: "kind", text: link.kind}), " ",
        el("time", {text: clock(link.at)}), " ",
        link.round !== null && link.round !== undefined ? el("span", {class: "round", text: "round " + link.round}) : null,
        " ", el("span", {class: "summary", text: link.summary || ""})));
      body.replaceChildren(
        el("p", {class: "why-state", text: why.on === null || why.on === undefined ? "state unknown" :
          (why.on ? "on" : "off") + " at " + clock(why.at)}),
        items.length ? el("ol", {class: "chain"}, ...items) : el("p", {class: "muted", text: "no chain on record"}),
        why.text ? el("pre", {class: "why-text", text: why.text}) : null);
    } catch (e) {
      body.replaceChildren(el("p", {class: "error", text: e.message}));
    }
  }

  function closeWhyOnClick() {
    const dialog = byId("why");
    byId("why-close").addEventListener("click", () => dialog.close());
  }

  return {API, el, byId, watts, duration, parseUtc, clock, call, stream, showWhy, closeWhyOnClick, ApiError};
})();
