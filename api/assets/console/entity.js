// The entity pane: one document with its version (ETag), where the read came from (X-Cache) and
// which Redis keys hold it; edit with If-Match (a 412 says it changed meanwhile), create with
// If-None-Match: *, delete with If-Match.
"use strict";

const Entity = (() => {
  let collection = null;
  let loaded = null; // { id, etag }
  const $ = (id) => document.getElementById(id);

  function path(id) {
    return `/v1/${Api.enc(collection.name)}/${Api.enc(id)}`;
  }

  function message(text, kind) {
    const box = $("entity-message");
    box.textContent = text;
    box.className = kind || "";
  }

  function meta(rows) {
    const dl = $("entity-meta");
    dl.innerHTML = "";
    for (const [name, value] of rows) {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = value;
      dd.id = `entity-${name.toLowerCase().replace(/[^a-z]/g, "-")}`;
      dl.append(dt, dd);
    }
  }

  async function projections(id) {
    const list = $("entity-projections");
    list.innerHTML = "";
    try {
      const body = await Api.get(`${path(id)}/projections`);
      const rows = [
        [`meta ${body.meta_key}: ${body.cached_version === null ? "not cached"
          : `version ${body.cached_version}${body.tombstone ? " (tombstone)" : ""}`}`],
        ...body.keys.map((k) => [`key ${k}`]),
        ...body.indexes.map((k) => [`index ${k}`]),
      ];
      for (const [text] of rows) {
        const li = document.createElement("li");
        li.textContent = text;
        list.appendChild(li);
      }
    } catch (err) {
      list.innerHTML = `<li>${err.message}</li>`;
    }
  }

  // `token`: the Cacheflow-Token of a write just made, so that the reload after a save shows that
  // version (read-your-writes) even while the worker has not projected it yet.
  async function load(id, token) {
    message("");
    try {
      const headers = token ? { "Cacheflow-Token": token } : {};
      const response = await Api.request("GET", path(id), { headers });
      loaded = { id, etag: response.headers.get("ETag") };
      $("entity-doc").value = JSON.stringify(response.body, null, 2);
      meta([
        ["Id", id],
        ["Version", response.body.version],
        ["X-Cache", response.headers.get("X-Cache") || "?"],
      ]);
    } catch (err) {
      loaded = null;
      meta([["Id", id]]);
      $("entity-doc").value = "";
      message(err.status === 404 ? `${id} does not exist.` : err.message, "error");
    }
    await projections(id);
  }

  function documentFromForm() {
    const doc = JSON.parse($("entity-doc").value);
    delete doc.version;
    return doc;
  }

  async function write(kind) {
    const id = $("entity-id").value.trim();
    if (!id) return message("Enter an id.", "error");
    let doc;
    try {
      doc = documentFromForm();
    } catch (err) {
      return message(`The document is not JSON: ${err.message}`, "error");
    }
    const headers = kind === "create" ? { "If-None-Match": "*" } : { "If-Match": loaded && loaded.etag };
    if (kind === "save" && !(loaded && loaded.id === id)) return message("Load the entity first.", "error");
    try {
      const response = await Api.request("PUT", path(id), { body: doc, headers });
      await load(id, response.headers.get("Cacheflow-Token"));
      message(`Saved: version ${response.body.version}.`, "done");
    } catch (err) {
      if (err.status === 412) {
        message(kind === "create"
          ? `${id} already exists: load it to edit it.`
          : "Changed meanwhile: someone else saved a newer version. Reload to see it, then edit again.",
          "error");
      } else {
        message(`${err.code}: ${err.message}`, "error");
      }
    }
  }

  async function remove() {
    const id = $("entity-id").value.trim();
    if (!loaded || loaded.id !== id) return message("Load the entity first.", "error");
    if (!window.confirm(`Delete ${id}?`)) return;
    try {
      await Api.request("DELETE", path(id), { headers: { "If-Match": loaded.etag } });
      loaded = null;
      $("entity-doc").value = "";
      meta([["Id", id]]);
      message(`Deleted ${id}.`, "done");
    } catch (err) {
      message(err.status === 412 ? "Changed meanwhile: reload before deleting." : `${err.code}: ${err.message}`, "error");
    }
  }

  function blank() {
    loaded = null;
    $("entity-id").value = "";
    meta([]);
    $("entity-projections").innerHTML = "";
    const doc = {};
    for (const [name, type] of Object.entries(collection.fields)) {
      doc[name] = type === "number" || type === "integer" ? 0
        : type === "geo_point" ? { type: "Point", coordinates: [0, 0] } : "";
    }
    $("entity-doc").value = JSON.stringify(doc, null, 2);
    message("Enter an id and the fields, then Create.");
  }

  function show(c) {
    collection = c;
  }

  function open(id) {
    $("entity-id").value = id;
    App.showPane("entity");
    load(id);
  }

  function init() {
    $("entity-load").addEventListener("click", () => {
      const id = $("entity-id").value.trim();
      if (id) load(id);
    });
    $("entity-save").addEventListener("click", () => write("save"));
    $("entity-create").addEventListener("click", () => write("create"));
    $("entity-delete").addEventListener("click", remove);
    $("entity-new").addEventListener("click", blank);
  }

  window.addEventListener("DOMContentLoaded", init);
  return { show, open };
})();
