// The one place that talks to the API: adds the key kept in sessionStorage, parses JSON and turns
// `{ code, message }` errors into exceptions the panes show as they are.
"use strict";

const Api = (() => {
  const KEY = "cacheflow.apiKey";

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function key() {
    return sessionStorage.getItem(KEY) || "";
  }

  function setKey(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  }

  // Returns { status, body, headers }; throws ApiError for a 4xx/5xx answer.
  async function request(method, path, { body, headers = {} } = {}) {
    const init = { method, headers: { ...headers } };
    if (key()) init.headers.Authorization = `Bearer ${key()}`;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let parsed = null;
    if (text) {
      try { parsed = JSON.parse(text); } catch (_) { parsed = text; }
    }
    if (!response.ok) {
      const code = parsed && parsed.code ? parsed.code : `http_${response.status}`;
      const message = parsed && parsed.message ? parsed.message : response.statusText;
      throw new ApiError(response.status, code, message);
    }
    return { status: response.status, body: parsed, headers: response.headers };
  }

  const get = (path) => request("GET", path).then((r) => r.body);

  // What the key may do, from two requests that change nothing: the edge checks the role before
  // routing, so a write method on a read-only route answers 405 to a writer and 403 to a reader.
  async function role() {
    const can = async (method, path) => {
      try {
        await request(method, path);
        return "yes";
      } catch (err) {
        if (err.status === 401) return "unauthorized";
        if (err.status === 403) return "no";
        if (err.code === "admin_disabled") return "disabled";
        return "yes";
      }
    };
    const [write, admin] = await Promise.all([
      can("DELETE", "/v1/collections"),
      can("GET", "/v1/admin/status"),
    ]);
    return { write: write === "yes", admin: admin === "yes", unauthorized: write === "unauthorized",
             adminDisabled: admin === "disabled" };
  }

  const enc = encodeURIComponent;

  return { ApiError, key, setKey, request, get, role, enc };
})();
