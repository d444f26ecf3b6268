// jishi dashboard — what the page shows, derived from the API's documents. Pure functions, no DOM:
//   status  GET /v1/status  {revision, services, instances, routes, gateways, agents}
//   stats   GET /v1/stats   {time, window, routes, services, instances, policies}, or null when not available
"use strict";

window.jishiModel = (() => {
  const inRotation = (inst) => inst.health !== "critical" && !inst.draining;

  // health class of an instance: passing | warning | critical | draining
  const instanceHealth = (inst) => (inst.draining ? "draining" : inst.health);

  const byServiceAndId = (a, b) => a.service.localeCompare(b.service) || a.id.localeCompare(b.id);

  // One entry per service (declared, or only registered): counts and a health class —
  // passing: every wanted instance in rotation; warning: some; critical: none; draining: scaled to 0.
  function serviceViews(status) {
    const names = new Set([...status.services.map((s) => s.name), ...status.instances.map((i) => i.service)]);
    const desired = new Map(status.services.map((s) => [s.name, s.instances]));
    return [...names].sort().map((name) => {
      const mine = status.instances.filter((i) => i.service === name);
      const live = mine.filter(inRotation).length;
      const want = desired.has(name) ? desired.get(name) : mine.length;
      let health = "passing";
      if (want === 0 && live === 0) health = "draining";
      else if (live === 0) health = "critical";
      else if (live < want) health = "warning";
      return { name, desired: want, running: mine.length, live, health, declared: desired.has(name) };
    });
  }

  // The cluster in one word: critical (a service with nothing in rotation, or no gateway), degraded (a service
  // below its count, or an alert firing), healthy.
  function grade(status, firing) {
    const views = serviceViews(status);
    const bad = views.filter((s) => s.health === "critical").length;
    const weak = views.filter((s) => s.health === "warning").length;
    const why = `${bad} service(s) with no instance in rotation, ${weak} below the desired count, ` +
      `${status.gateways.length} gateway(s), ${firing} alert(s) firing`;
    if (bad || !status.gateways.length) return { word: "critical", cls: "pill-bad", why };
    if (weak || firing) return { word: "degraded", cls: "pill-warn", why };
    return { word: "healthy", cls: "pill-ok", why };
  }

  const statsRow = (stats, kind, key) => (stats && stats[kind] ? stats[kind][key] || null : null);
  const routePolicy = (stats, name) => (stats && stats.policies ? stats.policies[name] || null : null);
  const totalRps = (stats) => (stats ? Object.values(stats.routes || {}).reduce((a, r) => a + (r.rps || 0), 0) : null);

  function routeLive(status, route) {
    const backends = new Set(route.backends.map((b) => b.service));
    return status.instances.filter((i) => backends.has(i.service) && inRotation(i)).length;
  }

  function breakerState(stats, route) {
    const policy = routePolicy(stats, route.name);
    if (policy && policy.breaker) return policy.breaker;
    return route.breaker ? "configured" : "off";
  }

  function routeHealth(status, stats, route) {
    const breaker = breakerState(stats, route);
    if (routeLive(status, route) === 0 || breaker === "open" || breaker === "forced_open") return "critical";
    if (breaker === "half_open") return "warning";
    return "passing";
  }

  // ---- route policies as short phrases ------------------------------------------------------------------

  function describeLb(route) {
    if (!route.lb) return "round_robin";
    const parts = [route.lb.policy];
    if (route.lb.hash_on) parts.push(`on ${route.lb.hash_on}`);
    if (route.lb.slow_start) parts.push(`slow start ${route.lb.slow_start}s`);
    return parts.join(", ");
  }

  function describeLimits(route, policy) {
    const parts = [];
    const rl = route.rate_limit;
    if (rl) {
      parts.push(`${rl.requests}/${rl.period}s ${rl.algorithm} by ${rl.key}${rl.redis ? " (redis)" : ""}${rl.shadow ? " shadow" : ""}`);
    }
    if (route.bulkhead) parts.push(`bulkhead ${route.bulkhead.max_concurrent}`);
    if (route.concurrency) parts.push(`adaptive ${route.concurrency.algorithm}`);
    if (policy && (policy.rate_limited || policy.shed)) parts.push(`${policy.rate_limited} limited, ${policy.shed} shed`);
    return parts.length ? parts.join("; ") : "none";
  }

  function describeRetries(route, policy) {
    const text = route.retry ? `${route.retry.attempts}× on ${route.retry.on.join(", ")}` : `${route.retries}×`;
    return text + (policy && policy.retries ? ` (${policy.retries} done)` : "");
  }

  function describeTimeouts(route) {
    const read = route.retry && route.retry.per_try_timeout ? route.retry.per_try_timeout : route.read_timeout;
    return `connect ${route.connect_timeout}s, read ${read}s${route.timeout ? `, total ${route.timeout}s` : ""}`;
  }

  const describeBackends = (route) => route.backends
    .map((b) => `${b.service}${b.weight !== 1 ? `×${b.weight}` : ""}${b.backup ? " (backup)" : ""}`).join(", ");

  // ---- the topology graph's nodes -----------------------------------------------------------------------

  function topologyModel(status, stats) {
    return {
      gateways: status.gateways.map((g) => {
        const load = stats && (stats.gateways || []).find((x) => x.id === g.id);
        const traffic = load ? `, ${load.connections} connections, ${load.workers} worker(s)` : "";
        return { id: g.id, health: "passing", title: `${g.id} at ${g.url} (pid ${g.pid}${traffic})` };
      }),
      routes: [...status.routes].sort((a, b) => a.prefix.localeCompare(b.prefix)).map((r) => ({
        name: r.name,
        services: r.backends.map((b) => b.service),
        health: routeHealth(status, stats, r),
        label: `${r.host || ""}${r.prefix}`,
        title: `route ${r.name}: ${r.host || "*"}${r.prefix} → ${describeBackends(r)}`,
      })),
      services: serviceViews(status).map((s) => ({
        name: s.name, health: s.health, label: `${s.name} ${s.live}/${s.desired}`,
        title: `${s.name}: ${s.live} of ${s.desired} in rotation, ${s.running} running`,
      })),
      instances: [...status.instances].sort(byServiceAndId).map((i) => ({
        service: i.service, id: i.id, health: instanceHealth(i), label: `${i.id} :${i.port}`,
        title: `${i.service}/${i.id} ${i.address}:${i.port} pid ${i.pid ?? "-"}: ${instanceHealth(i)} ${i.health_output || ""}`,
      })),
    };
  }

  // ---- chart history: one point per service per /v1/stats document, kept for `span` seconds -------------

  function appendHistory(history, status, stats, span) {
    const names = new Set([...status.services.map((x) => x.name), ...Object.keys(stats.services || {})]);
    for (const name of names) {
      const row = (stats.services || {})[name];
      const points = history.get(name) || [];
      points.push({ t: stats.time, rps: row ? row.rps : 0, err: row ? row.error_ratio * 100 : 0, p99: row ? row.p99_ms : null });
      while (points.length && points[0].t < stats.time - span) points.shift();
      history.set(name, points);
    }
  }

  return {
    inRotation, instanceHealth, byServiceAndId, serviceViews, grade, statsRow, routePolicy, totalRps, routeLive,
    breakerState, routeHealth, describeLb, describeLimits, describeRetries, describeTimeouts, describeBackends,
    topologyModel, appendHistory,
  };
})();
