// Start-up and the frame around the panes: the key form, the collection picker, the tabs, what a
// key's role hides, and the notice line for failures.
"use strict";

const App = (() => {
  const state = { collections: [], collection: null, role: { write: true, admin: true } };
  const $ = (id) => document.getElementById(id);

  function notice(text) {
    const box = $("notice");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function showPane(name) {
    for (const button of document.querySelectorAll("#tabs button")) {
      button.classList.toggle("active", button.dataset.pane === name);
    }
    for (const pane of document.querySelectorAll(".pane")) {
      pane.hidden = pane.id !== `pane-${name}`;
    }
    if (name === "ops") Ops.refresh();
  }

  async function applyRole() {
    state.role = await Api.role();
    const { write, admin, unauthorized, adminDisabled } = state.role;
    for (const el of document.querySelectorAll(".write")) el.classList.toggle("hidden-role", !write);
    for (const el of document.querySelectorAll(".admin")) el.classList.toggle("hidden-role", !admin);
    $("role").textContent = unauthorized ? "no valid key"
      : admin ? "admin" : write ? "writer (no operations)" : adminDisabled ? "admin routes off"
      : "reader (read only)";
  }

  function collection() {
    return state.collections.find((c) => c.name === state.collection);
  }

  async function loadCollections() {
    const { collections } = await Api.get("/v1/collections");
    state.collections = collections;
    const select = $("collection");
    select.innerHTML = "";
    for (const c of collections) select.add(new Option(c.name, c.name));
    state.collection = collections.length ? collections[0].name : null;
    await selectCollection();
  }

  async function selectCollection() {
    state.collection = $("collection").value || state.collection;
    const c = collection();
    if (!c) return;
    await Promise.all([MapPane.show(c), TopPane.show(c)]);
    Entity.show(c);
  }

  async function start() {
    $("key").value = Api.key();
    $("key-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      Api.setKey($("key").value.trim());
      await boot();
    });
    for (const button of document.querySelectorAll("#tabs button")) {
      button.addEventListener("click", () => showPane(button.dataset.pane));
    }
    $("collection").addEventListener("change", () => selectCollection().catch(fail));
    Ops.init();
    await boot();
  }

  async function boot() {
    notice("");
    try {
      await applyRole();
      await loadCollections();
    } catch (err) {
      fail(err);
    }
  }

  function fail(err) {
    notice(err instanceof Api.ApiError ? `${err.code}: ${err.message}` : String(err));
  }

  return { state, start, collection, showPane, notice, fail, $ };
})();

window.addEventListener("DOMContentLoaded", () => App.start());
