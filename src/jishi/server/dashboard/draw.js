// jishi dashboard — drawing: DOM/SVG element builder, formatting, the topology graph and the sparklines.
// Pure functions of the data they are given; app.js owns the polling and the state. No dependencies.
"use strict";

window.jishiDraw = (() => {
  const SVG = "http://www.w3.org/2000/svg";

  // h("div", {class: "x", "data-testid": "y"}, child, "text", ...) — every text goes through textContent,
  // so names from the API are never parsed as HTML. Tags starting with "svg:" are made in the SVG namespace.
  function h(tag, attrs, ...children) {
    const isSvg = tag.startsWith("svg:");
    const el = isSvg ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  // ---- formatting ---------------------------------------------------------------------------------------

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
    return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, "0")}h`;
  }

  function num(value, digits = 1) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(1)}k`;
    return Number(value).toFixed(digits).replace(/\.0+$/, "");
  }

  function ms(value) {
    return value === null || value === undefined ? "–" : `${num(value, value < 10 ? 1 : 0)} ms`;
  }

  function clock(unix) {
    return new Date(unix * 1000).toLocaleTimeString([], { hour12: false });
  }

  // ---- topology: gateways → routes → services → instances ----------------------------------------------

  const COL = { gateway: 20, route: 230, service: 470, instance: 700 };
  const NODE_W = { gateway: 170, route: 190, service: 170, instance: 250 };
  const NODE_H = 30;
  const ROW = 38;

  // Place items at their wanted y, in order, never closer than `gap` (pushed down when they would overlap).
  function spread(items, gap) {
    items.sort((a, b) => a.want - b.want || a.order - b.order);
    let last = -Infinity;
    for (const item of items) {
      item.y = Math.max(item.want, last + gap);
      last = item.y;
    }
    return items;
  }

  // model: {gateways: [{id, health}], routes: [{name, services: [..], health, label}],
  //         services: [{name, health, label}], instances: [{service, id, health, label}]}
  function topology(model) {
    const inst = model.instances.map((i, n) => ({ ...i, want: 20 + n * ROW, order: n }));
    spread(inst, ROW);
    const svcY = new Map();
    const services = model.services.map((s, n) => {
      const mine = inst.filter((i) => i.service === s.name);
      const want = mine.length ? mine.reduce((a, i) => a + i.y, 0) / mine.length : 20 + n * ROW;
      return { ...s, want, order: n };
    });
    spread(services, ROW);
    services.forEach((s) => svcY.set(s.name, s.y));
    const routes = model.routes.map((r, n) => {
      const ys = r.services.filter((s) => svcY.has(s)).map((s) => svcY.get(s));
      const want = ys.length ? ys.reduce((a, y) => a + y, 0) / ys.length : 20 + n * ROW;
      return { ...r, want, order: n };
    });
    spread(routes, ROW);
    const bottom = Math.max(60, ...[inst, services, routes].flat().map((n) => n.y + NODE_H + 20));
    const gws = model.gateways.length ? model.gateways : [{ id: "no gateway running", health: "critical", none: true }];
    const gwStart = bottom / 2 - (gws.length * ROW) / 2;
    const gateways = gws.map((g, n) => ({ ...g, y: Math.max(10, gwStart + n * ROW) }));

    const width = COL.instance + NODE_W.instance + 20;
    const svg = h("svg:svg", {
      class: "topology", viewBox: `0 0 ${width} ${bottom}`, width: "100%", role: "img",
      "aria-label": "topology of the cluster", "data-testid": "topology",
    });
    const edges = h("svg:g", { class: "edges" });
    const nodes = h("svg:g", { class: "nodes" });
    svg.append(edges, nodes);

    const edge = (fromKind, fromY, toKind, toY, cls) => {
      const x1 = COL[fromKind] + NODE_W[fromKind];
      const y1 = fromY + NODE_H / 2;
      const x2 = COL[toKind];
      const y2 = toY + NODE_H / 2;
      const mid = (x1 + x2) / 2;
      edges.append(h("svg:path", { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, class: `edge ${cls}` }));
    };
    const node = (kind, x, y, item, text, attrs) => {
      const g = h("svg:g", {
        class: `node ${kind} ${item.health}`, transform: `translate(${x},${y})`, "data-kind": kind,
        "data-health": item.health, ...attrs,
      });
      g.append(h("svg:title", {}, item.title || text));
      g.append(h("svg:rect", { width: NODE_W[kind], height: NODE_H, rx: 6, ry: 6 }));
      g.append(h("svg:circle", { cx: 14, cy: NODE_H / 2, r: 5, class: "status" }));
      const max = Math.floor((NODE_W[kind] - 30) / 7);
      g.append(h("svg:text", { x: 26, y: NODE_H / 2 + 4 }, text.length > max ? `${text.slice(0, max - 1)}…` : text));
      nodes.append(g);
    };

    for (const g of gateways) {
      if (g.none) continue;
      for (const r of routes) edge("gateway", g.y, "route", r.y, r.health === "critical" ? "broken" : "");
    }
    for (const r of routes) {
      for (const s of r.services) if (svcY.has(s)) edge("route", r.y, "service", svcY.get(s), "");
    }
    for (const i of inst) edge("service", svcY.get(i.service) ?? i.y, "instance", i.y, i.health === "passing" ? "" : "broken");

    for (const g of gateways) {
      node("gateway", COL.gateway, g.y, g, g.none ? g.id : `gateway ${g.id}`, { "data-testid": "topo-gateway", "data-id": g.id });
    }
    for (const r of routes) node("route", COL.route, r.y, r, r.label, { "data-testid": "topo-route", "data-name": r.name });
    for (const s of services) {
      node("service", COL.service, s.y, s, s.label, { "data-testid": "topo-service", "data-name": s.name });
    }
    for (const i of inst) {
      node("instance", COL.instance, i.y, i, i.label, {
        "data-testid": "topo-instance", "data-service": i.service, "data-id": i.id,
      });
    }
    return svg;
  }

  // ---- sparkline: one series over the last `span` seconds -----------------------------------------------

  function sparkline(points, { key, now, span = 300, label, unit = "", testid, fixedMax = 0 }) {
    const W = 260;
    const H = 56;
    const values = points.map((p) => p[key]).filter((v) => v !== null && v !== undefined);
    const max = Math.max(fixedMax, ...values, 0) || 1;
    const last = values.length ? values[values.length - 1] : null;
    const svg = h("svg:svg", { class: "spark", viewBox: `0 0 ${W} ${H}`, width: W, height: H, "data-testid": testid });
    svg.append(h("svg:line", { x1: 0, y1: H - 1, x2: W, y2: H - 1, class: "axis" }));
    let path = "";
    let pen = false;
    for (const p of points) {
      const v = p[key];
      if (v === null || v === undefined) {
        pen = false;
        continue;
      }
      const x = W - ((now - p.t) / span) * W;
      const y = H - 2 - (v / max) * (H - 16);
      path += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)} `;
      pen = true;
    }
    if (path) svg.append(h("svg:path", { d: path, class: `line ${key}` }));
    const value = last === null ? "–" : `${num(last, last < 10 ? 2 : 1)}${unit}`;
    svg.append(h("svg:text", { x: 2, y: 11, class: "spark-label" }, `${label} ${value}`));
    svg.append(h("svg:text", { x: W - 2, y: 11, class: "spark-max", "text-anchor": "end" }, `max ${num(max)}${unit}`));
    return svg;
  }

  return { h, duration, num, ms, clock, topology, sparkline };
})();
