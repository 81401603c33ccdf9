// The map pane: the collection's places drawn on an SVG plane (an equirectangular projection
// fitted to the points, no tiles), a click runs the geo index's `near` search around the point
// with the radius of the slider, and the results are listed and drawn.
"use strict";

const MapPane = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 800, H = 500, PAD = 30, M_PER_DEG = 111320;
  const MAX_PAGES = 5;
  let view = null; // { field, index, places, project, unproject }
  const $ = (id) => document.getElementById(id);

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    parent.appendChild(node);
    return node;
  }

  function point(doc, field) {
    const p = doc && doc[field];
    return p && p.type === "Point" && Array.isArray(p.coordinates) ? p.coordinates : null;
  }

  async function loadPlaces(collection, field) {
    const places = [];
    let cursor = null;
    for (let page = 0; page < MAX_PAGES; page++) {
      const query = `limit=1000${cursor ? `&cursor=${Api.enc(cursor)}` : ""}`;
      const body = await Api.get(`/v1/${Api.enc(collection.name)}?${query}`);
      for (const doc of body.items) if (point(doc, field)) places.push(doc);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return places;
  }

  // A projection fitted to the points, with one scale for both axes (longitude shrunk by the
  // cosine of the middle latitude) so distances look right.
  function fit(points) {
    const lons = points.map((p) => p[0]), lats = points.map((p) => p[1]);
    let [w, e, s, n] = points.length
      ? [Math.min(...lons), Math.max(...lons), Math.min(...lats), Math.max(...lats)]
      : [-180, 180, -80, 80];
    const grow = Math.max(0.01, (e - w) * 0.1, (n - s) * 0.1);
    w -= grow; e += grow; s -= grow; n += grow;
    const k = Math.cos(((s + n) / 2) * Math.PI / 180);
    const scale = Math.min((W - 2 * PAD) / ((e - w) * k), (H - 2 * PAD) / (n - s));
    const cx = (w + e) / 2, cy = (s + n) / 2;
    return {
      project: ([lon, lat]) => [W / 2 + (lon - cx) * k * scale, H / 2 - (lat - cy) * scale],
      unproject: ([x, y]) => [cx + (x - W / 2) / (k * scale), cy - (y - H / 2) / scale],
      pxPerMetre: scale / M_PER_DEG,
    };
  }

  function draw(hits = [], centre = null, radius = 0) {
    const svg = $("map");
    svg.innerHTML = "";
    if (!view) return;
    for (let i = 1; i < 8; i++) el("line", { class: "grid", x1: i * 100, y1: 0, x2: i * 100, y2: H }, svg);
    for (let i = 1; i < 5; i++) el("line", { class: "grid", x1: 0, y1: i * 100, x2: W, y2: i * 100 }, svg);
    if (centre) {
      const [x, y] = view.project(centre);
      const r = radius * view.pxPerMetre;
      el("circle", { class: "radius", cx: x, cy: y, r }, svg);
      el("circle", { class: "centre", cx: x, cy: y, r: 4 }, svg);
    }
    const hitIds = new Set(hits.map((h) => h.id));
    for (const doc of view.places) {
      const [x, y] = view.project(point(doc, view.field));
      const dot = el("circle", { class: hitIds.has(doc.id) ? "place hit" : "place", cx: x, cy: y, r: 5,
                                 "data-id": doc.id }, svg);
      el("title", {}, dot).textContent = doc.name ? `${doc.name} (${doc.id})` : doc.id;
    }
  }

  async function show(collection) {
    const field = Object.keys(collection.fields).find((f) => collection.fields[f] === "geo_point");
    const indexes = collection.indexes.filter((i) => i.kind === "geo");
    const select = $("map-index");
    select.innerHTML = "";
    for (const i of indexes) select.add(new Option(i.name, i.path));
    $("near-results").innerHTML = "";
    if (!field || !indexes.length) {
      view = null;
      draw();
      return;
    }
    const places = await loadPlaces(collection, field);
    view = { field, places, ...fit(places.map((p) => point(p, field))) };
    draw();
  }

  async function near(lonLat) {
    const radius = Number($("radius").value);
    const path = $("map-index").value;
    const [lon, lat] = lonLat.map((v) => Number(v.toFixed(6)));
    const body = await Api.get(`${path}?lon=${lon}&lat=${lat}&radius_m=${radius}&limit=100`);
    const list = $("near-results");
    list.innerHTML = "";
    for (const item of body.items) {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.textContent = item.document.name || item.id;
      link.addEventListener("click", () => Entity.open(item.id));
      li.append(link, ` ${item.id}, ${Math.round(item.distance_m)} m`);
      list.appendChild(li);
    }
    if (!body.items.length) list.innerHTML = "<li>Nothing within the radius.</li>";
    draw(body.items, [lon, lat], radius);
  }

  function init() {
    $("radius").addEventListener("input", () => { $("radius-out").textContent = `${$("radius").value} m`; });
    $("map").addEventListener("click", (event) => {
      if (!view) return;
      const svg = $("map");
      const box = svg.getBoundingClientRect();
      const x = ((event.clientX - box.left) / box.width) * W;
      const y = ((event.clientY - box.top) / box.height) * H;
      near(view.unproject([x, y])).catch(App.fail);
    });
  }

  window.addEventListener("DOMContentLoaded", init);
  return { show };
})();
