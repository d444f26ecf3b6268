// jishi dashboard — state, polling and the panels. Reads the control plane's /v1/ API once a second:
//   /v1/status (services, instances, routes, gateways, agents)  — required; the page says "unreachable" without it
//   /v1/stats, /v1/alerts, /v1/events                           — optional; a 404 shows "not available" in the panel
// and follows /v1/watch on the instances to redraw as soon as one changes.
// Actions use the same API as the CLI: POST /v1/services/{s}/scale, POST /v1/instances/{s}/{id}/restart.
"use strict";

(() => {
  const { h, duration, num, ms, clock, instanceHealth, topology, sparkline } = window.jishiDraw;
  const POLL_MS = 1000;
  const HISTORY_S = 300;
  const MAX_EVENTS = 200;
  const ABSENT_RETRY_MS = 10000; // an endpoint that answered 404 is asked again this much later

  const state = {
    status: null, // ClusterStatus JSON
    stats: null, // GET /v1/stats, or {unavailable: message}
    alerts: null,
    events: [],
    eventIds: new Set(),
    eventsLoaded: false,
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
        doc = null;
      }
      const message = doc && doc.error ? doc.error.message : `${method} ${path}: HTTP ${reply.status}`;
      return { ok: reply.ok, status: reply.status, body: doc, message };
    } catch (exc) {
      return { ok: false, status: 0, body: null, message: `the control plane cannot be reached (${exc.message})` };
    }
  }

  // An optional endpoint (stats, alerts, events) that answered 404 is not asked again for ABSENT_RETRY_MS:
  // the control plane may be older than the dashboard; the panel says "not available" meanwhile.
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

  function notAvailable(container, what, reply) {
    const text = reply.status === 404
      ? `${what}: not available on this control plane`
      : `${what}: ${reply.message}`;
    container.replaceChildren(h("p", { class: "unavailable", "data-testid": "not-available" }, text));
  }

  let toastTimer = null;
  function toast(text, bad = false) {
    const el = $("toast");
    el.textContent = text;
    el.className = `toast show ${bad ? "bad" : "good"}`;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.className = "toast"; }, 5000);
  }

  // ---- derived views --------------------------------------------------------------------------------------

  function serviceViews() {
    const st = state.status;
    const names = new Set([...st.services.map((s) => s.name), ...st.instances.map((i) => i.service)]);
    const desired = new Map(st.services.map((s) => [s.name, s.instances]));
    return [...names].sort().map((name) => {
      const mine = st.instances.filter((i) => i.service === name);
      const live = mine.filter((i) => i.health !== "critical" && !i.draining).length;
      const want = desired.has(name) ? desired.get(name) : mine.length;
      let health = "passing";
      if (want === 0 && live === 0) health = "draining";
      else if (live === 0) health = "critical";
      else if (live < want) health = "warning";
      return { name, desired: want, running: mine.length, live, health, declared: desired.has(name) };
    });
  }

  function statsRow(kind, key) {
    const s = state.stats;
    return s && !s.unavailable && s[kind] ? s[kind][key] || null : null;
  }

  function routePolicy(name) {
    const s = state.stats;
    return s && !s.unavailable && s.policies ? s.policies[name] || null : null;
  }

  function routeLive(route) {
    const backends = new Set(route.backends.map((b) => b.service));
    return state.status.instances.filter((i) => backends.has(i.service) && i.health !== "critical" && !i.draining).length;
  }

  function routeHealth(route) {
    const breaker = (routePolicy(route.name) || {}).breaker;
    if (routeLive(route) === 0 || breaker === "open" || breaker === "forced_open") return "critical";
    if (breaker === "half_open") return "warning";
    return "passing";
  }

  // ---- header ---------------------------------------------------------------------------------------------

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
    const services = serviceViews();
    const firing = state.alerts && !state.alerts.unavailable
      ? state.alerts.alerts.filter((a) => a.state === "firing").length : 0;
    const bad = services.filter((s) => s.health === "critical").length;
    const weak = services.filter((s) => s.health === "warning").length;
    let word = "healthy";
    let cls = "pill-ok";
    if (bad || !st.gateways.length) [word, cls] = ["critical", "pill-bad"];
    else if (weak || firing) [word, cls] = ["degraded", "pill-warn"];
    pill.textContent = word;
    pill.className = `pill ${cls}`;
    pill.title = `${bad} service(s) with no instance in rotation, ${weak} below the desired count, ${firing} alert(s) firing`;
    const live = st.instances.filter((i) => i.health !== "critical" && !i.draining).length;
    const totalRps = state.stats && !state.stats.unavailable
      ? Object.values(state.stats.routes || {}).reduce((a, r) => a + (r.rps || 0), 0) : null;
    const items = [
      ["services", "services", st.services.length],
      ["instances in rotation", "instances", `${live}/${st.instances.length}`],
      ["gateways", "gateways", st.gateways.length],
      ["agents", "agents", st.agents.length],
      ["requests/s", "rps", totalRps === null ? "–" : num(totalRps)],
      ["alerts firing", "alerts", state.alerts && !state.alerts.unavailable ? firing : "–"],
      ["revision", "revision", st.revision],
    ];
    $("summary").replaceChildren(...items.flatMap(([label, id, value]) => [
      h("dt", {}, label), h("dd", { "data-testid": `summary-${id}` }, value),
    ]));
    $("updated").textContent = `updated ${clock(Date.now() / 1000)}`;
  }

  // ---- topology -------------------------------------------------------------------------------------------

  function renderTopology() {
    const st = state.status;
    const services = serviceViews();
    const model = {
      gateways: st.gateways.map((g) => ({ id: g.id, health: "passing", title: `${g.id} at ${g.url} (pid ${g.pid})` })),
      routes: [...st.routes].sort((a, b) => a.prefix.localeCompare(b.prefix)).map((r) => ({
        name: r.name,
        services: r.backends.map((b) => b.service),
        health: routeHealth(r),
        label: `${r.host ? r.host : ""}${r.prefix}`,
        title: `route ${r.name}: ${r.host || "*"}${r.prefix} → ${r.backends.map((b) => b.service).join(", ")}`,
      })),
      services: services.map((s) => ({
        name: s.name, health: s.health, label: `${s.name} ${s.live}/${s.desired}`,
        title: `${s.name}: ${s.live} of ${s.desired} in rotation, ${s.running} running`,
      })),
      instances: [...st.instances]
        .sort((a, b) => a.service.localeCompare(b.service) || a.id.localeCompare(b.id))
        .map((i) => ({
          service: i.service, id: i.id, health: instanceHealth(i), label: `${i.id} :${i.port}`,
          title: `${i.service}/${i.id} ${i.address}:${i.port} pid ${i.pid ?? "-"}: ${instanceHealth(i)} ${i.health_output || ""}`,
        })),
    };
    $("topology").replaceChildren(topology(model));
  }

  // ---- services: live charts and the scale action ---------------------------------------------------------

  function recordHistory() {
    const s = state.stats;
    if (!s || s.unavailable || s.time === state.lastStatsTime) return;
    state.lastStatsTime = s.time;
    const names = new Set([...state.status.services.map((x) => x.name), ...Object.keys(s.services || {})]);
    for (const name of names) {
      const row = (s.services || {})[name];
      const points = state.history.get(name) || [];
      points.push({
        t: s.time,
        rps: row ? row.rps : 0,
        err: row ? row.error_ratio * 100 : 0,
        p99: row ? row.p99_ms : null,
      });
      while (points.length && points[0].t < s.time - HISTORY_S) points.shift();
      state.history.set(name, points);
    }
  }

  const cards = new Map();

  function serviceCard(name) {
    const input = h("input", { type: "number", min: 0, step: 1, "data-testid": `scale-input-${name}`, "aria-label": `instances of ${name}` });
    input.addEventListener("input", () => { input.dataset.dirty = "1"; });
    const button = h("button", { type: "submit", "data-testid": `scale-button-${name}` }, "Scale");
    const form = h("form", { class: "scale", "data-testid": `scale-form-${name}` },
      h("label", {}, "instances ", input), button);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      scale(name, input, button);
    });
    const head = h("div", { class: "card-head" });
    const charts = h("div", { class: "charts" });
    const card = h("article", { class: "card", "data-testid": "service-card", "data-name": name }, head, charts, form);
    return { card, head, charts, input };
  }

  function renderServices() {
    const container = $("services");
    const views = serviceViews();
    const seen = new Set();
    const now = state.lastStatsTime || Date.now() / 1000;
    if (!views.length) {
      container.replaceChildren(h("p", { class: "muted" }, "no services declared yet — apply a jishi.yaml with `jishi up -f FILE`"));
      cards.clear();
      return;
    }
    container.querySelectorAll(":scope > p").forEach((p) => p.remove());
    for (const view of views) {
      seen.add(view.name);
      let entry = cards.get(view.name);
      if (!entry) {
        entry = serviceCard(view.name);
        cards.set(view.name, entry);
      }
      const { card, head, charts, input } = entry;
      Object.assign(card.dataset, { desired: view.desired, running: view.running, live: view.live, health: view.health });
      const row = statsRow("services", view.name);
      head.replaceChildren(...[
        h("span", { class: `dot ${view.health}` }),
        h("b", {}, view.name),
        h("span", { class: "count", "data-testid": `service-count-${view.name}` }, `${view.live}/${view.desired} in rotation`),
        h("span", { class: "muted" }, `${view.running} running`),
        view.declared ? null : h("span", { class: "warn" }, "not declared"),
        row ? h("span", { class: "muted right" }, `${row.requests} requests, ${row.errors} errors`) : null,
      ].filter(Boolean));
      if (state.stats && state.stats.unavailable) {
        charts.replaceChildren(h("p", { class: "unavailable", "data-testid": "not-available" }, state.stats.unavailable));
      } else {
        const points = state.history.get(view.name) || [];
        charts.replaceChildren(
          sparkline(points, { key: "rps", now, label: "req/s", testid: `chart-rps-${view.name}` }),
          sparkline(points, { key: "err", now, label: "errors", unit: "%", testid: `chart-errors-${view.name}`, fixedMax: 1 }),
          sparkline(points, { key: "p99", now, label: "p99", unit: " ms", testid: `chart-p99-${view.name}` }),
        );
      }
      if (document.activeElement !== input && !input.dataset.dirty) input.value = String(view.desired);
      if (card.parentNode !== container) container.append(card);
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

  // ---- instances ------------------------------------------------------------------------------------------

  function renderInstances() {
    const now = Date.now() / 1000;
    const rows = [...state.status.instances]
      .sort((a, b) => a.service.localeCompare(b.service) || a.id.localeCompare(b.id))
      .map((i) => {
        const health = instanceHealth(i);
        const row = statsRow("instances", `${i.service}/${i.id}`);
        const restart = h("button", {
          class: "small", "data-action": "restart", "data-service": i.service, "data-id": i.id,
          "data-testid": `restart-${i.service}-${i.id}`, title: `restart ${i.id} (new process, same slot)`,
        }, "Restart");
        return h("tr", {
          "data-testid": "instance-row", "data-service": i.service, "data-id": i.id, "data-health": health,
          "data-pid": i.pid ?? "", class: health,
        },
        h("td", {}, i.service),
        h("td", { class: "mono" }, i.id),
        h("td", { class: "mono" }, `${i.address}:${i.port}`),
        h("td", { class: "num mono" }, i.pid ?? "–"),
        h("td", { class: "num" }, i.started_at ? duration(now - i.started_at) : "–"),
        h("td", { class: "num" }, i.restarts),
        h("td", { title: i.health_output || "" }, h("span", { class: `badge ${health}`, "data-testid": "health" }, health)),
        h("td", { class: "num" }, row ? num(row.rps) : "–"),
        h("td", { class: "num" }, row ? ms(row.p99_ms) : "–"),
        h("td", {}, i.agent ? restart : null));
      });
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 10, class: "muted" }, "no instances running")));
    $("instances").replaceChildren(...rows);
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

  // ---- routes ---------------------------------------------------------------------------------------------

  function describeLb(r) {
    if (!r.lb) return "round_robin";
    const parts = [r.lb.policy];
    if (r.lb.hash_on) parts.push(`on ${r.lb.hash_on}`);
    if (r.lb.slow_start) parts.push(`slow start ${r.lb.slow_start}s`);
    return parts.join(", ");
  }

  function describeLimits(r, policy) {
    const parts = [];
    if (r.rate_limit) {
      const rl = r.rate_limit;
      parts.push(`${rl.requests}/${rl.period}s ${rl.algorithm} by ${rl.key}${rl.redis ? " (redis)" : ""}${rl.shadow ? " shadow" : ""}`);
    }
    if (r.bulkhead) parts.push(`bulkhead ${r.bulkhead.max_concurrent}`);
    if (r.concurrency) parts.push(`adaptive ${r.concurrency.algorithm}`);
    if (policy && (policy.rate_limited || policy.shed)) parts.push(`${policy.rate_limited} limited, ${policy.shed} shed`);
    return parts.length ? parts.join("; ") : "none";
  }

  function renderRoutes() {
    const rows = [...state.status.routes].sort((a, b) => a.prefix.localeCompare(b.prefix)).map((r) => {
      const policy = routePolicy(r.name);
      const live = routeLive(r);
      const breaker = policy && policy.breaker ? policy.breaker : r.breaker ? "configured" : "off";
      const breakerCls = { closed: "passing", open: "critical", forced_open: "critical", half_open: "warning" }[breaker] || "draining";
      const retries = r.retry ? `${r.retry.attempts}× on ${r.retry.on.join(", ")}` : `${r.retries}×`;
      const timeouts = `connect ${r.connect_timeout}s, read ${r.retry && r.retry.per_try_timeout ? r.retry.per_try_timeout : r.read_timeout}s${r.timeout ? `, total ${r.timeout}s` : ""}`;
      const ejected = policy && policy.ejected && policy.ejected.length ? policy.ejected.join(", ") : "–";
      return h("tr", { "data-testid": "route-row", "data-name": r.name },
        h("td", {}, h("b", {}, r.name)),
        h("td", { class: "mono" }, `${r.host || "*"}${r.prefix}${r.strip_prefix ? " (strip)" : ""}`),
        h("td", {}, r.backends.map((b) => `${b.service}${b.weight !== 1 ? `×${b.weight}` : ""}${b.backup ? " (backup)" : ""}`).join(", ")),
        h("td", { class: `num ${live ? "" : "bad"}` }, live),
        h("td", {}, describeLb(r)),
        h("td", {}, h("span", { class: `badge ${breakerCls}`, "data-testid": "breaker" }, breaker)),
        h("td", {}, describeLimits(r, policy)),
        h("td", {}, retries + (policy && policy.retries ? ` (${policy.retries} done)` : "")),
        h("td", {}, timeouts),
        h("td", { class: "mono" }, ejected));
    });
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 10, class: "muted" }, "no routes")));
    $("routes").replaceChildren(...rows);
  }

  // ---- alerts and events ----------------------------------------------------------------------------------

  function renderAlerts() {
    const a = state.alerts;
    if (!a) return;
    if (a.unavailable) return notAvailable($("alerts"), "alerts", a.reply);
    const items = [...a.alerts].sort((x, y) => (x.state === y.state ? x.since - y.since : x.state === "firing" ? -1 : 1));
    if (!items.length) {
      $("alerts").replaceChildren(h("p", { class: "ok", "data-testid": "no-alerts" }, "no alerts firing"));
      return;
    }
    $("alerts").replaceChildren(h("ul", { class: "list" }, items.map((al) => h("li", { "data-testid": "alert", "data-state": al.state },
      h("span", { class: `badge ${al.state === "firing" ? "critical" : "warning"}` }, al.state),
      h("b", {}, al.name),
      h("span", { class: "muted" }, ` since ${clock(al.since)}`),
      h("div", {}, al.message),
      h("div", { class: "muted mono" }, Object.entries(al.labels || {}).map(([k, v]) => `${k}=${v}`).join(" "))))));
  }

  async function pollEvents() {
    const last = state.events.length ? state.events[state.events.length - 1].id : null;
    const query = last ? `?since=${encodeURIComponent(last)}&limit=100` : "?limit=100";
    const reply = await optional(`/v1/events${query}`);
    if (!reply.ok) {
      notAvailable($("events"), "events", reply);
      return;
    }
    for (const ev of reply.body.events || []) {
      if (state.eventIds.has(ev.id)) continue;
      state.eventIds.add(ev.id);
      state.events.push(ev);
    }
    while (state.events.length > MAX_EVENTS) state.eventIds.delete(state.events.shift().id);
    state.eventsLoaded = true;
    renderEvents();
  }

  function renderEvents() {
    if (!state.events.length) {
      $("events").replaceChildren(h("p", { class: "muted" }, "no events yet"));
      return;
    }
    const items = [...state.events].reverse().map((ev) => h("li", { "data-testid": "event", "data-kind": ev.kind, class: ev.level },
      h("span", { class: "muted mono" }, clock(ev.time)), " ",
      h("span", { class: `badge ${ev.level === "error" ? "critical" : ev.level === "warning" ? "warning" : "info"}` }, ev.kind), " ",
      h("b", {}, ev.subject), " ", ev.reason));
    $("events").replaceChildren(h("ul", { class: "list events" }, items));
  }

  // ---- the loop -------------------------------------------------------------------------------------------

  let running = false;
  let again = false;
  let timer = null;

  async function tick() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    clearTimeout(timer);
    try {
      const [status, stats, alerts] = await Promise.all([api("/v1/status"), optional("/v1/stats"), optional("/v1/alerts")]);
      state.stats = stats.ok ? stats.body : { unavailable: stats.status === 404 ? "metrics: not available on this control plane" : `metrics: ${stats.message}` };
      state.alerts = alerts.ok ? alerts.body : { unavailable: true, reply: alerts };
      if (status.ok) {
        state.status = status.body;
        recordHistory();
        renderTopology();
        renderServices();
        renderInstances();
        renderRoutes();
      }
      renderHeader(status);
      renderAlerts();
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
