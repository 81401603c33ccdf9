// The top-lists pane: a sorted-set index of the collection, its key variables as filters
// (e.g. category), a page at a time with limit/offset.
"use strict";

const TopPane = (() => {
  let collection = null;
  let offset = 0;
  const $ = (id) => document.getElementById(id);

  function index() {
    return collection && collection.indexes.find((i) => i.path === $("top-index").value);
  }

  function renderVars() {
    const vars = $("top-vars");
    vars.innerHTML = "";
    const i = index();
    if (!i) return;
    for (const name of i.key_vars) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.name = name;
      input.id = `top-var-${name}`;
      input.placeholder = name;
      label.append(`${name} `, input);
      vars.appendChild(label);
    }
  }

  async function load() {
    const i = index();
    if (!i) return;
    const limit = Number($("top-limit").value) || 10;
    const params = new URLSearchParams({ limit, offset });
    for (const name of i.key_vars) {
      const value = $(`top-var-${name}`).value.trim();
      if (!value) {
        $("top-results").innerHTML = `<li>Enter ${name} to see this list.</li>`;
        return;
      }
      params.set(name, value);
    }
    const body = await Api.get(`${i.path}?${params}`);
    const list = $("top-results");
    list.innerHTML = "";
    list.start = offset + 1;
    for (const item of body.items) {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.textContent = item.document.name || item.id;
      link.addEventListener("click", () => Entity.open(item.id));
      li.append(link, ` ${item.id}, ${i.score || "score"} ${item.score}`);
      list.appendChild(li);
    }
    if (!body.items.length) list.innerHTML = "<li>No entries on this page.</li>";
    $("top-page").textContent = `entries ${offset + 1}–${offset + body.items.length}`;
    $("top-next").disabled = body.items.length < limit;
    $("top-prev").disabled = offset === 0;
  }

  async function show(c) {
    collection = c;
    offset = 0;
    const select = $("top-index");
    select.innerHTML = "";
    for (const i of c.indexes.filter((i) => i.kind === "sorted_set")) select.add(new Option(i.name, i.path));
    renderVars();
    $("top-results").innerHTML = "";
  }

  function init() {
    $("top-index").addEventListener("change", () => { offset = 0; renderVars(); $("top-results").innerHTML = ""; });
    $("top-load").addEventListener("click", () => { offset = 0; load().catch(App.fail); });
    $("top-next").addEventListener("click", () => {
      offset += Number($("top-limit").value) || 10;
      load().catch(App.fail);
    });
    $("top-prev").addEventListener("click", () => {
      offset = Math.max(0, offset - (Number($("top-limit").value) || 10));
      load().catch(App.fail);
    });
  }

  window.addEventListener("DOMContentLoaded", init);
  return { show };
})();
