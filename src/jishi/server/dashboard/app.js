// jishi dashboard — state, polling, the header and service cards, and the actions. Reads the /v1/ API once a second:
//   /v1/status (services, instances, routes, gateways, agents)  — required; the page says "unreachable" without it
//   /v1/stats, /v1/alerts, /v1/events                           — optional; a 404 shows "not available" in the panel
// and follows /v1/watch on the instances to redraw as soon as one changes.
// Actions use the same API as the CLI: POST /v1/services/{s}/scale, POST /v1/instances/{s}/{id}/restart.
// Files: draw.js (elements, topology, charts), model.js (derived views), panels.js (tables, lists), this one.
"use strict";

(() => {
  const { h, num, clock, topology, sparkline } = window.jishiDraw;
  const M = window.jishiModel;
  const P = window.jishiPanels;
  const POLL_MS = 1000;
  const HISTORY_S = 300;
  const MAX_EVENTS = 200;
  const ABSENT_RETRY_MS = 10000; // an endpoint that answered 404 is asked again this much later

  const state = {
    status: null, // GET /v1/status
    stats: null, // GET /v1/stats; null while not available (statsProblem says why)
    statsProblem: null,
    alerts: null, // GET /v1/alerts reply
    events: [], // oldest first, at most MAX_EVENTS
    eventIds: new Set(),
    history: new Map(), // service → [{t, rps, err, p99}]
    lastStatsTime: 0,
  };
  const $ = (id) => document.getElementById(id);
  window.jishiDashboard = { loadedAt: Date.now(), state, ticks: 0 };

  // ---- the API ------------------------------------------------------------------------------------------

  async function api(path, { method = "GET", body } = {}) {
    try {
      const reply = await fetch(path, {
        method,
        headers: body === undefined ? {} : { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
      let doc = null;
      try {
        doc = await reply.json();
      } catch (_) {
        doc = null; // not JSON (a proxy's error page): the status line says enough
      }
      const message = doc && doc.error ? doc.error.message : `${method} ${path}: HTTP ${reply.status}`;
      return { ok: reply.ok, status: reply.status, body: doc, message };
    } catch (exc) {
      return { ok: false, status: 0, body: null, message: `the control plane cannot be reached (${exc.message})` };
    }
  }

  // An optional endpoint that answered 404 is not asked again for ABSENT_RETRY_MS: the control plane may be older
  // than the dashboard; its panel says "not available" meanwhile.
  const absent = new Map(); // path → {until, reply}
  async function optional(path) {
    const key = path.split("?")[0];
    const known = absent.get(key);
    if (known && Date.now() < known.until) return known.reply;
    const reply = await api(path);
    if (reply.status === 404) absent.set(key, { until: Date.now() + ABSENT_RETRY_MS, reply });
    else absent.delete(key);
    return reply;
  }

  function unavailable(what, reply) {
    const text = reply.status === 404 ? `${what}: not available on this control plane` : `${what}: ${reply.message}`;
    return h("p", { class: "unavailable", "data-testid": "not-available" }, text);
  }

  let toastTimer = null;
  function toast(text, bad = false) {
    const el = $("toast");
    el.textContent = text;
    el.className = `toast show ${bad ? "bad" : "good"}`;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.className = "toast"; }, 5000);
  }

  // ---- header -------------------------------------------------------------------------------------------

  function renderHeader(reply) {
    const pill = $("cluster-status");
    if (!reply.ok) {
      pill.textContent = "unreachable";
      pill.className = "pill pill-bad";
      pill.title = reply.message;
      $("updated").textContent = reply.message;
      return;
    }
    const st = state.status;
    const alerts = state.alerts && state.alerts.ok ? state.alerts.body.alerts : null;
    const firing = alerts ? alerts.filter((a) => a.state === "firing").length : 0;
    const grade = M.grade(st, firing);
    pill.textContent = grade.word;
    pill.className = `pill ${grade.cls}`;
    pill.title = grade.why;
    const rps = M.totalRps(state.stats);
    const items = [
      ["services", "services", st.services.length],
      ["instances in rotation", "instances", `${st.instances.filter(M.inRotation).length}/${st.instances.length}`],
      ["gateways", "gateways", st.gateways.length],
      ["agents", "agents", st.agents.length],
      ["requests/s", "rps", rps === null ? "–" : num(rps)],
      ["alerts firing", "alerts", alerts ? firing : "–"],
      ["revision", "revision", st.revision],
    ];
    $("summary").replaceChildren(...items.flatMap(([label, id, value]) => [
      h("dt", {}, label), h("dd", { "data-testid": `summary-${id}` }, value),
    ]));
    $("updated").textContent = `updated ${clock(Date.now() / 1000)}`;
  }

  // ---- services: counts, live charts and the scale action -----------------------------------------------

  const cards = new Map(); // service → {card, head, charts, input}: kept across redraws so typing is not lost

  function serviceCard(name) {
    const input = h("input", { type: "number", min: 0, step: 1, "data-testid": `scale-input-${name}`, "aria-label": `instances of ${name}` });
    input.addEventListener("input", () => { input.dataset.dirty = "1"; });
    const button = h("button", { type: "submit", "data-testid": `scale-button-${name}` }, "Scale");
    const form = h("form", { class: "scale", "data-testid": `scale-form-${name}` }, h("label", {}, "instances ", input), button);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      scale(name, input, button);
    });
    const head = h("div", { class: "card-head" });
    const charts = h("div", { class: "charts" });
    const card = h("article", { class: "card", "data-testid": "service-card", "data-name": name }, head, charts, form);
    return { card, head, charts, input };
  }

  function charts(name) {
    if (!state.stats) return [h("p", { class: "unavailable", "data-testid": "not-available" }, state.statsProblem)];
    const points = state.history.get(name) || [];
    const now = state.lastStatsTime;
    return [
      sparkline(points, { key: "rps", now, label: "req/s", testid: `chart-rps-${name}` }),
      sparkline(points, { key: "err", now, label: "errors", unit: "%", testid: `chart-errors-${name}`, fixedMax: 1 }),
      sparkline(points, { key: "p99", now, label: "p99", unit: " ms", testid: `chart-p99-${name}` }),
    ];
  }

  function renderServices() {
    const container = $("services");
    const views = M.serviceViews(state.status);
    if (!views.length) {
      container.replaceChildren(h("p", { class: "muted" }, "no services declared yet — apply a jishi.yaml with `jishi up -f FILE`"));
      cards.clear();
      return;
    }
    container.querySelectorAll(":scope > p").forEach((p) => p.remove());
    const seen = new Set();
    for (const view of views) {
      seen.add(view.name);
      if (!cards.has(view.name)) cards.set(view.name, serviceCard(view.name));
      const { card, head, charts: chartBox, input } = cards.get(view.name);
      Object.assign(card.dataset, { desired: view.desired, running: view.running, live: view.live, health: view.health });
      const row = M.statsRow(state.stats, "services", view.name);
      head.replaceChildren(...[
        h("span", { class: `dot ${view.health}` }),
        h("b", {}, view.name),
        h("span", { class: "count", "data-testid": `service-count-${view.name}` }, `${view.live}/${view.desired} in rotation`),
        h("span", { class: "muted" }, `${view.running} running`),
        view.declared ? null : h("span", { class: "warn" }, "not declared"),
        row ? h("span", { class: "muted right" }, `${row.requests} requests, ${row.errors} errors`) : null,
      ].filter(Boolean));
      chartBox.replaceChildren(...charts(view.name));
      if (document.activeElement !== input && !input.dataset.dirty) input.value = String(view.desired);
      container.append(card); // keeps the cards in name order
    }
    for (const [name, entry] of cards) {
      if (!seen.has(name)) {
        entry.card.remove();
        cards.delete(name);
      }
    }
  }

  async function scale(name, input, button) {
    const count = Number.parseInt(input.value, 10);
    if (!Number.isInteger(count) || count < 0) {
      toast(`${name}: the instance count must be a whole number ≥ 0`, true);
      return;
    }
    button.disabled = true;
    const reply = await api(`/v1/services/${encodeURIComponent(name)}/scale`, { method: "POST", body: { instances: count } });
    button.disabled = false;
    delete input.dataset.dirty;
    if (reply.ok) toast(`${name}: scaled to ${reply.body.instances} instances`);
    else toast(`${name}: scaling failed — ${reply.message}`, true);
    refreshSoon();
  }

  async function restart(service, id, button) {
    button.disabled = true;
    const reply = await api(`/v1/instances/${encodeURIComponent(service)}/${encodeURIComponent(id)}/restart`, { method: "POST" });
    button.disabled = false;
    if (reply.ok) toast(`${service}/${id}: restarting`);
    else if (reply.status === 404 && /: Not Found$/.test(reply.message)) { // no such endpoint (not: no such instance)
      toast(`restart: not available on this control plane (${reply.message})`, true);
    } else toast(`${service}/${id}: restart failed — ${reply.message}`, true);
    refreshSoon();
  }

  // ---- events: the newest page first, then what came after the last id seen ------------------------------

  async function pollEvents() {
    const last = state.events.length ? state.events[state.events.length - 1].id : null;
    const reply = await optional(`/v1/events${last ? `?since=${encodeURIComponent(last)}&limit=100` : "?limit=100"}`);
    if (!reply.ok) {
      $("events").replaceChildren(unavailable("events", reply));
      return;
    }
    for (const ev of reply.body.events || []) {
      if (state.eventIds.has(ev.id)) continue;
      state.eventIds.add(ev.id);
      state.events.push(ev);
    }
    while (state.events.length > MAX_EVENTS) state.eventIds.delete(state.events.shift().id);
    $("events").replaceChildren(P.eventList(state.events));
  }

  // ---- the loop -----------------------------------------------------------------------------------------

  let running = false;
  let again = false;
  let timer = null;

  async function tick() {
    if (running) {
      again = true; // a change arrived meanwhile: look once more right after this round
      return;
    }
    running = true;
    clearTimeout(timer);
    try {
      const [status, stats, alerts] = await Promise.all([api("/v1/status"), optional("/v1/stats"), optional("/v1/alerts")]);
      state.stats = stats.ok ? stats.body : null;
      state.statsProblem = stats.ok ? null : unavailable("metrics", stats).textContent;
      state.alerts = alerts;
      if (status.ok) {
        state.status = status.body;
        if (state.stats && state.stats.time !== state.lastStatsTime) {
          state.lastStatsTime = state.stats.time;
          M.appendHistory(state.history, state.status, state.stats, HISTORY_S);
        }
        $("topology").replaceChildren(topology(M.topologyModel(state.status, state.stats)));
        renderServices();
        $("instances").replaceChildren(...P.instanceRows(state.status, state.stats, Date.now() / 1000));
        $("routes").replaceChildren(...P.routeRows(state.status, state.stats));
      }
      renderHeader(status);
      $("alerts").replaceChildren(alerts.ok ? P.alertList(alerts.body) : unavailable("alerts", alerts));
      await pollEvents();
      window.jishiDashboard.ticks += 1;
    } catch (exc) {
      console.error("dashboard update failed", exc);
      toast(`dashboard update failed: ${exc.message}`, true);
    } finally {
      running = false;
      timer = setTimeout(tick, again ? 0 : POLL_MS);
      again = false;
    }
  }

  function refreshSoon() {
    tick();
  }

  // Between polls, a change to the instances (exit, restart, health) redraws at once: the page follows the
  // control plane's watch stream (NDJSON) and takes any line that is not a heartbeat as "look again now".
  async function followChanges() {
    for (;;) {
      try {
        const reply = await fetch("/v1/watch?prefix=/jishi/instances/", { cache: "no-store" });
        if (!reply.ok || !reply.body) throw new Error(`HTTP ${reply.status}`);
        const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          const lines = buffer.split("\n");
          buffer = lines.pop();
          if (lines.some((line) => line.trim() && !line.startsWith('{"heartbeat"'))) refreshSoon();
        }
      } catch (exc) {
        console.debug("watch stream ended; polling meanwhile", exc);
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  document.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-action=restart]");
    if (button) restart(button.dataset.service, button.dataset.id, button);
  });
  tick();
  followChanges();
})();
