// The operations pane: dependencies, backlogs, sync lag, the last verify, cache generations and
// the dead letters (inspect, redrive, drop), refreshed every few seconds; invalidation of the
// selected collection. Every call here needs an admin key and ADMIN_ENABLED on the API.
"use strict";

const Ops = (() => {
  const REFRESH_MS = 3000;
  let timer = null;
  const $ = (id) => document.getElementById(id);

  function message(text, kind) {
    const box = $("ops-message");
    box.textContent = text;
    box.className = kind || "";
  }

  function list(id, rows) {
    const ul = $(id);
    ul.innerHTML = "";
    for (const [text, ok] of rows) {
      const li = document.createElement("li");
      li.textContent = text;
      if (ok !== undefined) li.className = ok ? "ok" : "bad";
      ul.appendChild(li);
    }
  }

  function pairs(id, rows) {
    const dl = $(id);
    dl.innerHTML = "";
    for (const [name, value] of rows) {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = value === null || value === undefined ? "unknown" : value;
      dl.append(dt, dd);
    }
  }

  function status(s) {
    list("ops-deps", Object.entries(s.dependencies).map(([name, d]) =>
      [`${name}: ${d.ok ? "ok" : `down: ${d.error || ""}`}`, d.ok]));
    pairs("ops-backlog", [
      ["outbox pending", s.outbox.pending],
      ["consumer", s.consumer && s.consumer.name],
      ["consumer pending", s.consumer && s.consumer.pending],
      ["ack pending", s.consumer && s.consumer.ack_pending],
      ["redelivered", s.consumer && s.consumer.redelivered],
      ["dead letters", s.dead_letters],
      ["parked entities", s.parked_entities],
    ]);
    const lags = Object.entries(s.sync_lag.collections || {});
    list("ops-lag", lags.length
      ? lags.map(([name, l]) => [`${name}: ${l.last_ms} ms at ${l.at}`])
      : [["no heartbeat yet"]]);
  }

  function audit(last) {
    if (!last) return pairs("ops-audit", [["last", "none yet"]]);
    pairs("ops-audit", [
      ["source", last.source], ["finished", last.finished_at], ["checked", last.checked],
      ["drifted", last.drifted], ["rate", last.inconsistency_rate],
    ]);
  }

  function generations(body) {
    list("ops-generations", body.collections.map((g) => [
      `${g.collection}: active "${g.active}"` +
      (g.writes.length ? `, also written ${g.writes.join(", ")}` : "") +
      (g.building.length ? `, building ${g.building.join(", ")}` : ""),
    ]));
  }

  function button(text, action) {
    const b = document.createElement("button");
    b.textContent = text;
    b.addEventListener("click", () => action().catch((err) => message(`${err.code}: ${err.message}`, "error")));
    return b;
  }

  function deadLetters(items) {
    const body = $("ops-dead-letters").querySelector("tbody");
    body.innerHTML = "";
    for (const d of items) {
      const tr = document.createElement("tr");
      tr.dataset.seq = d.seq;
      for (const v of [d.seq, d.collection, d.id ?? "?", d.version ?? "?", d.reason]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.appendChild(td);
      }
      const actions = document.createElement("td");
      actions.append(
        button("Inspect", async () => {
          const shown = await Api.get(`/v1/admin/dead-letters/${d.seq}`);
          $("ops-dead-letter").textContent = JSON.stringify(shown, null, 2);
        }),
        button("Redrive", async () => {
          await Api.request("POST", `/v1/admin/dead-letters/${d.seq}/redrive`);
          message(`Dead letter ${d.seq} redriven.`, "done");
          await refresh();
        }),
        button("Drop", async () => {
          await Api.request("DELETE", `/v1/admin/dead-letters/${d.seq}`);
          message(`Dead letter ${d.seq} dropped.`, "done");
          await refresh();
        }),
      );
      tr.appendChild(actions);
      body.appendChild(tr);
    }
    if (!items.length) body.innerHTML = '<tr><td colspan="6">No dead letters.</td></tr>';
  }

  async function refresh() {
    if (!App.state.role.admin) {
      message(App.state.role.adminDisabled
        ? "The admin routes are off: start the API with ADMIN_ENABLED=true."
        : "Operations need an admin key.", "error");
      return;
    }
    try {
      const [s, a, g, d] = await Promise.all([
        Api.get("/v1/admin/status"),
        Api.get("/v1/admin/audit"),
        Api.get("/v1/admin/generations"),
        Api.get("/v1/admin/dead-letters?limit=100"),
      ]);
      status(s);
      audit(a.last);
      generations(g);
      deadLetters(d.items);
    } catch (err) {
      message(`${err.code}: ${err.message}`, "error");
    }
  }

  async function invalidate() {
    const name = App.state.collection;
    if (!window.confirm(`Invalidate every cached entry of ${name}?`)) return;
    await Api.request("POST", "/v1/admin/invalidate", { body: { collection: name } });
    message(`${name} invalidated.`, "done");
  }

  function schedule() {
    clearInterval(timer);
    timer = setInterval(() => {
      const visible = !$("pane-ops").hidden;
      if (visible && $("ops-live").checked) refresh();
    }, REFRESH_MS);
  }

  function init() {
    $("ops-refresh").addEventListener("click", refresh);
    $("ops-invalidate").addEventListener("click", () =>
      invalidate().catch((err) => message(`${err.code}: ${err.message}`, "error")));
    schedule();
  }

  return { init, refresh };
})();
