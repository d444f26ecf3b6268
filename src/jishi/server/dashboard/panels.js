// jishi dashboard — the table and list panels: instances, routes and policies, alerts, events.
// Each function returns the elements to put in its panel; app.js decides when and where.
"use strict";

window.jishiPanels = (() => {
  const { h, duration, num, ms, clock } = window.jishiDraw;
  const M = window.jishiModel;

  const emptyRow = (text) => h("tr", {}, h("td", { colspan: 10, class: "muted" }, text));

  // One row per instance; a Restart button for those an agent runs (the button's clicks are handled by app.js).
  function instanceRows(status, stats, now) {
    const rows = [...status.instances].sort(M.byServiceAndId).map((i) => {
      const health = M.instanceHealth(i);
      const row = M.statsRow(stats, "instances", `${i.service}/${i.id}`);
      const restart = i.agent ? h("button", {
        class: "small", "data-action": "restart", "data-service": i.service, "data-id": i.id,
        "data-testid": `restart-${i.service}-${i.id}`, title: `restart ${i.id} (new process, same slot)`,
      }, "Restart") : null;
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
      h("td", {}, restart));
    });
    return rows.length ? rows : [emptyRow("no instances running")];
  }

  const BREAKER_CLASS = { closed: "passing", open: "critical", forced_open: "critical", half_open: "warning" };

  function routeRows(status, stats) {
    const rows = [...status.routes].sort((a, b) => a.prefix.localeCompare(b.prefix)).map((r) => {
      const policy = M.routePolicy(stats, r.name);
      const live = M.routeLive(status, r);
      const breaker = M.breakerState(stats, r);
      const ejected = policy && policy.ejected && policy.ejected.length ? policy.ejected.join(", ") : "–";
      return h("tr", { "data-testid": "route-row", "data-name": r.name },
        h("td", {}, h("b", {}, r.name)),
        h("td", { class: "mono" }, `${r.host || "*"}${r.prefix}${r.strip_prefix ? " (strip)" : ""}`),
        h("td", {}, M.describeBackends(r)),
        h("td", { class: `num ${live ? "" : "bad"}` }, live),
        h("td", {}, M.describeLb(r)),
        h("td", {}, h("span", { class: `badge ${BREAKER_CLASS[breaker] || "draining"}`, "data-testid": "breaker" }, breaker)),
        h("td", {}, M.describeLimits(r, policy)),
        h("td", {}, M.describeRetries(r, policy)),
        h("td", {}, M.describeTimeouts(r)),
        h("td", { class: "mono" }, ejected));
    });
    return rows.length ? rows : [emptyRow("no routes")];
  }

  // Firing first, then pending; each oldest first.
  function alertList(doc) {
    const items = [...doc.alerts].sort((x, y) => (x.state === y.state ? x.since - y.since : x.state === "firing" ? -1 : 1));
    if (!items.length) return h("p", { class: "ok", "data-testid": "no-alerts" }, "no alerts firing");
    return h("ul", { class: "list" }, items.map((al) => h("li", { "data-testid": "alert", "data-state": al.state },
      h("span", { class: `badge ${al.state === "firing" ? "critical" : "warning"}` }, al.state), " ",
      h("b", {}, al.name),
      h("span", { class: "muted" }, ` since ${clock(al.since)}`),
      h("div", {}, al.message),
      h("div", { class: "muted mono" }, Object.entries(al.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ")))));
  }

  const LEVEL_CLASS = { error: "critical", warning: "warning" };

  // Newest first.
  function eventList(events) {
    if (!events.length) return h("p", { class: "muted" }, "no events yet");
    return h("ul", { class: "list events" }, [...events].reverse().map((ev) => h("li", {
      "data-testid": "event", "data-kind": ev.kind, class: ev.level,
    },
    h("span", { class: "muted mono" }, clock(ev.time)), " ",
    h("span", { class: `badge ${LEVEL_CLASS[ev.level] || "info"}` }, ev.kind), " ",
    h("b", {}, ev.subject), " ", ev.reason)));
  }

  return { instanceRows, routeRows, alertList, eventList };
})();
