// acctstream's dashboard (issue 26): one page, no build step, reading the
// same public API as any client. The token is kept in sessionStorage (never
// in a URL); the view, window and zone are in the location's fragment, so a
// view can be bookmarked and shared without the token. When the service has
// a client at its OAuth2 issuer (sign-in.json), "Sign in" gets the token
// there with the authorization code flow and PKCE (RFC 7636).
"use strict";
(function () {
  const TOKEN_KEY = "acctstream.token";
  const SIGN_IN_KEY = "acctstream.signIn"; // the PKCE verifier and state while away
  let signIn = null; // sign-in.json's signIn
  const EVENTS = "/api/v1/statistics/events";
  const WIFI = "/api/v1/statistics/client-events";
  const SESSIONS = "/api/v1/statistics/sessions";
  const ZONES = ["", "UTC", "Europe/Helsinki", "Europe/London", "Europe/Berlin", "America/New_York",
    "America/Santiago", "Asia/Tokyo", "Australia/Sydney"];

  const $ = (id) => document.getElementById(id);
  // Column headings for the values counted by.
  const LABELS = { authMethodType: "Method", authRequestOrigin: "Application", userName: "User",
    callingStationId: "Device", nasIpAddress: "NAS" };
  const label = (by) => LABELS[by] || by || "records";
  const state = { view: "auth", period: "", datetime: "", tz: "" };
  let links = null; // the window's links, from its first chart
  let generation = 0; // a newer render makes older answers stale

  // --- views ---------------------------------------------------------------
  const VIEWS = {
    auth: {
      periods: ["day", "week", "month"],
      charts: [
        (w) => series("auth-per-hour", "Authentications per hour, by method",
          `${EVENTS}/counts/${w}`, { by: "authMethodType", every: "hour", top: "8" }),
        (w, first) => uniqueUsers(first),
        (w) => bars("auth-top-applications", "Top applications by authentications",
          `${EVENTS}/counts/${w}`, { by: "authRequestOrigin", top: "10" }),
      ],
    },
    wifi: {
      periods: ["hour", "day"],
      charts: [
        (w) => series("wifi-failures", "Failed connections over time",
          `${WIFI}/counts/${w}`, { eventType: "Failure", every: state.period === "hour" ? "minute" : "hour" }),
        (w) => wifiSummary(w),
      ],
    },
    sessions: {
      periods: ["day", "hour", "week"],
      charts: [
        (w) => bars("sessions-top-users", "Top users by traffic (input + output octets)",
          `${SESSIONS}/counts/${w}`, { by: "userName", sum: ["acctInputOctets", "acctOutputOctets"], top: "10" }, traffic),
        () => online(),
        (w) => bars("sessions-top-devices", "Top devices by traffic",
          `${SESSIONS}/counts/${w}`, { by: "callingStationId", sum: ["acctInputOctets", "acctOutputOctets"], top: "10" }, traffic),
        (w) => bars("sessions-per-nas", "Sessions per NAS",
          `${SESSIONS}/counts/${w}`, { by: "nasIpAddress", top: "20" }),
      ],
    },
  };

  // --- the API -------------------------------------------------------------
  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      for (const one of [].concat(v)) q.append(k, one);
    }
    if (state.tz) q.set("tz", state.tz);
    const text = q.toString();
    return text ? "?" + text : "";
  }

  async function api(url, accept) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const response = await fetch(url, {
      headers: { Authorization: "Bearer " + token, Accept: accept || "application/json" },
      cache: "no-store",
    });
    if (!response.ok) {
      let description = response.status + " " + response.statusText;
      try {
        const body = await response.json();
        if (body && body.error_description) description = body.error_description;
      } catch (_) { /* not JSON */ }
      const error = new Error(description);
      error.status = response.status;
      throw error;
    }
    return accept ? response : response.json();
  }

  // A link that downloads exactly what the chart shows, as CSV (fetched
  // with the token, which a plain link could not carry).
  function csvLink(url) {
    const a = document.createElement("a");
    a.className = "csv";
    a.href = "#";
    a.textContent = "CSV";
    a.title = "Download what this chart shows as CSV";
    a.dataset.url = url;
    a.addEventListener("click", async (event) => {
      event.preventDefault();
      try {
        const response = await api(url, "text/csv");
        const blob = await response.blob();
        const disposition = response.headers.get("Content-Disposition") || "";
        const name = (/filename="([^"]+)"/.exec(disposition) || [])[1] || "acctstream.csv";
        const save = document.createElement("a");
        save.href = URL.createObjectURL(blob);
        save.download = name;
        document.body.appendChild(save);
        save.click();
        save.remove();
        setTimeout(() => URL.revokeObjectURL(save.href), 10000);
      } catch (error) {
        showStatus(error.message, true);
      }
    });
    return a;
  }

  function panel(id, title, url) {
    const section = document.createElement("section");
    section.className = "chart";
    section.dataset.chart = id;
    if (url) {
      section.dataset.source = url;
      section.appendChild(csvLink(url));
    }
    const h = document.createElement("h2");
    h.textContent = title;
    section.appendChild(h);
    $("charts").appendChild(section);
    return section;
  }

  function sub(section, text) {
    const p = document.createElement("p");
    p.className = "sub";
    p.textContent = text;
    section.appendChild(p);
  }

  const number = new Intl.NumberFormat();
  function traffic(octets) {
    const units = ["B", "kB", "MB", "GB", "TB"];
    let value = octets, unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit++; }
    return (unit ? value.toFixed(1) : String(value)) + " " + units[unit];
  }

  // A table of rows [key, value, shown] with bars; rows carry their exact
  // values (data-key, data-value) for whoever checks the page.
  function table(section, headers, rows, options) {
    if (!rows.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No records in this window.";
      section.appendChild(p);
      return;
    }
    const max = Math.max(...rows.map((r) => r.value), 1);
    const t = document.createElement("table");
    t.className = "rows";
    const head = t.createTHead().insertRow();
    headers.forEach((text, i) => {
      const th = document.createElement("th");
      th.textContent = text;
      if (i > 0) th.className = "num";
      head.appendChild(th);
    });
    head.appendChild(document.createElement("th"));
    const body = t.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      tr.dataset.key = row.key === null ? "" : String(row.key);
      tr.dataset.value = String(row.value);
      const key = tr.insertCell();
      key.className = "key";
      key.textContent = row.key === null ? "(none)" : String(row.key);
      key.title = key.textContent;
      for (const cell of row.cells) {
        const td = tr.insertCell();
        td.className = "num";
        td.textContent = cell;
      }
      const barCell = tr.insertCell();
      barCell.className = "barcell";
      const bar = document.createElement("div");
      bar.className = "bar" + (options && options.tone ? " " + options.tone(row) : "");
      bar.style.width = (100 * row.value / max).toFixed(1) + "%";
      barCell.appendChild(bar);
    }
    section.appendChild(t);
  }

  // --- charts --------------------------------------------------------------
  async function series(id, title, path, params) {
    const url = path + query(params);
    const section = panel(id, title, url);
    const body = await api(url);
    sub(section, windowText(body));
    // Without `by`, one series: the records (the failures, when filtered so).
    const whole = params.eventType === "Failure" ? "failures" : "records";
    // Every bucket of the window, those without records at 0.
    const epoch = (t) => Date.parse(/[+-]\d\d:\d\d$/.test(t) ? t : t + "Z") / 1000;
    const step = params.every === "minute" ? 60 : 3600;
    const times = [];
    for (let t = epoch(body.start); t < epoch(body.end); t += step) times.push(t);
    const keys = [];
    for (const c of body.counts) if (!keys.some((k) => k === c.key)) keys.push(c.key);
    const index = new Map(times.map((t, i) => [t, i]));
    const columns = keys.map(() => new Array(times.length).fill(0));
    const totals = keys.map(() => 0);
    for (const c of body.counts) {
      const k = keys.indexOf(c.key);
      const i = index.get(epoch(c.time));
      if (i !== undefined) columns[k][i] = c.count;
      totals[k] += c.count;
    }
    if (times.length && window.uPlot) {
      const palette = ["#2a6fdb", "#c8423b", "#2f8a4c", "#d48b1f", "#7d4cc2", "#1aa3a3", "#8c6d46", "#d0559b"];
      const x = times;
      const holder = document.createElement("div");
      section.appendChild(holder);
      const width = Math.max(320, section.clientWidth - 24);
      // eslint-disable-next-line no-new
      new window.uPlot({
        width,
        height: 220,
        series: [{}].concat(keys.map((k, i) => ({
          label: k === undefined ? whole : (k === null ? "(none)" : String(k)),
          stroke: palette[i % palette.length],
          width: 1.5,
        }))),
        axes: [{}, { size: 60 }],
        scales: { x: { time: true } },
        // The axis in the chosen zone (else the browser's own).
        tzDate: state.tz ? (ts) => window.uPlot.tzDate(new Date(ts * 1000), state.tz) : undefined,
      }, [x].concat(columns), holder);
    }
    table(section, [label(params.by), "Total"],
      keys.map((k, i) => ({ key: k === undefined ? whole : k, value: totals[i], cells: [number.format(totals[i])] })));
    return body;
  }

  async function bars(id, title, path, params, format) {
    const url = path + query(params);
    const section = panel(id, title, url);
    const body = await api(url);
    sub(section, windowText(body));
    const sums = (c) => Object.values(c.sums || {}).reduce((a, b) => a + (b || 0), 0);
    const rows = body.counts.map((c) => {
      const value = c.sums ? sums(c) : c.count;
      return { key: c.key, value, cells: c.sums ? [number.format(c.count), format(value)] : [number.format(value)] };
    });
    const counted = path.startsWith(SESSIONS) ? "Sessions" : "Records";
    table(section, params.sum ? [label(params.by), counted, "Traffic"] : [label(params.by), counted], rows);
    return body;
  }

  async function uniqueUsers(first) {
    // The month the window starts in (its report; UTC months).
    const start = first && first.start ? first.start : new Date().toISOString();
    const month = start.slice(0, 7);
    const url = `/api/v1/accounting/report/${month}`;
    const section = panel("auth-unique-users", `Unique users per method in ${month}`, url);
    const body = await api(url);
    sub(section, `The month's report: ${number.format(body.total)} distinct users in all (a user of two methods counts once).`);
    table(section, ["Method", "Users"],
      body.rows.map((r) => ({ key: r.authMethodType, value: r.userCount, cells: [number.format(r.userCount)] })));
  }

  async function wifiSummary(w) {
    const url = `${WIFI}/summary/${w}` + query({});
    const body = await api(url);
    const rate = (r) => (r.successRate === null ? "–" : (100 * r.successRate).toFixed(1) + " %");
    const attempts = (id, title, list) => {
      const section = panel(id, title, url);
      sub(section, "Successful and failed connections; the bar is the success rate.");
      table(section, [title.startsWith("Success rate per SSID") ? "SSID" : "AP", "Successes", "Failures", "Rate"],
        list.slice(0, 15).map((r) => ({
          key: r.name, value: r.successRate === null ? 0 : r.successRate,
          cells: [number.format(r.successes), number.format(r.failures), rate(r)],
        })), { tone: (row) => (row.value < 0.8 ? "bad" : "good") });
    };
    attempts("wifi-ssids", "Success rate per SSID", body.ssids);
    attempts("wifi-aps", "Success rate per AP (most failures first)", body.aps);
    const reasons = panel("wifi-failure-reasons", "Top failure reasons", url);
    table(reasons, ["Reason", "Failures"], body.topFailures.map((f) => ({
      key: [f.failure, f.subFailure].filter((x) => x).join(": ") || "(unknown)",
      value: f.count, cells: [number.format(f.count)],
    })), { tone: () => "bad" });
  }

  async function online() {
    const today = new Date().toISOString().slice(0, 10);
    const countUrl = `${SESSIONS}/counts/day/${today}?status=open`;
    const pageUrl = "/api/v1/sessions/online?limit=10";
    const section = panel("sessions-online", "Online now", pageUrl);
    const [count, page] = await Promise.all([api(countUrl), api(pageUrl)]);
    const total = count.counts.reduce((a, c) => a + c.count, 0);
    const big = document.createElement("p");
    big.className = "big";
    big.dataset.value = String(total);
    big.textContent = number.format(total);
    section.appendChild(big);
    sub(section, "Open sessions now; the ten newest:");
    table(section, ["User", "NAS", "Started", "Octets"], page.sessions.map((s) => ({
      key: s.userName, value: (s.acctInputOctets || 0) + (s.acctOutputOctets || 0),
      cells: [s.nasIpAddress || "", (s.acctStartTime || "").replace("T", " "), traffic((s.acctInputOctets || 0) + (s.acctOutputOctets || 0))],
    })));
  }

  function windowText(body) {
    return `${body.start.replace("T", " ")} – ${body.end.replace("T", " ")}${state.tz ? "" : " UTC"}`;
  }

  // --- the page ------------------------------------------------------------
  function showStatus(text, error) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", Boolean(error));
  }

  function readHash() {
    const q = new URLSearchParams(location.hash.slice(1));
    state.view = VIEWS[q.get("view")] ? q.get("view") : "auth";
    const periods = VIEWS[state.view].periods;
    state.period = periods.includes(q.get("period")) ? q.get("period") : periods[0];
    state.datetime = q.get("datetime") || "";
    state.tz = q.get("tz") || "";
  }

  function writeHash() {
    const q = new URLSearchParams({ view: state.view, period: state.period });
    if (state.datetime) q.set("datetime", state.datetime);
    if (state.tz) q.set("tz", state.tz);
    history.replaceState(null, "", "#" + q.toString());
  }

  function fillControls() {
    const period = $("period");
    period.replaceChildren(...VIEWS[state.view].periods.map((p) => new Option(p, p, false, p === state.period)));
    const own = Intl.DateTimeFormat().resolvedOptions().timeZone;
    const zones = ZONES.includes(own) ? ZONES : ZONES.concat([own]);
    $("tz").replaceChildren(...zones.map((z) => new Option(z || "UTC (default)", z, false, z === state.tz)));
    $("datetime").value = state.datetime;
    for (const b of document.querySelectorAll("#views button")) {
      b.setAttribute("aria-pressed", String(b.dataset.view === state.view));
    }
  }

  // The datetime a window link names (its last path segment).
  function datetimeOf(link) {
    const path = new URL(link, location.href).pathname;
    return decodeURIComponent(path.slice(path.lastIndexOf("/") + 1));
  }

  async function render() {
    const mine = ++generation;
    document.body.dataset.ready = "false";
    writeHash();
    fillControls();
    $("charts").replaceChildren();
    links = null;
    const signedIn = Boolean(sessionStorage.getItem(TOKEN_KEY));
    $("logout").hidden = !signedIn;
    if (!signedIn) {
      showStatus((signIn ? "Sign in, or enter" : "Enter") + " an API token (kept in this tab only) to see the charts.");
      return;
    }
    showStatus("Loading…");
    const w = state.period + (state.datetime ? "/" + encodeURIComponent(state.datetime) : "");
    const charts = VIEWS[state.view].charts;
    try {
      // The first chart decides the window (its links); the rest follow.
      const first = await charts[0](w);
      if (mine !== generation) return;
      if (first && first.links) {
        links = first.links;
        $("window").textContent = windowText(first);
        if (!state.datetime) {
          state.datetime = datetimeOf(first.links.self);
          writeHash();
          $("datetime").value = state.datetime;
        }
      }
      const view = state.period + "/" + encodeURIComponent(state.datetime);
      await Promise.all(charts.slice(1).map((chart) => chart(view, first)));
      if (mine !== generation) return;
      showStatus("");
      document.body.dataset.ready = "true";
    } catch (error) {
      if (mine !== generation) return;
      if (error.status === 401) sessionStorage.removeItem(TOKEN_KEY);
      showStatus(error.message, true);
      document.body.dataset.ready = "error";
    }
  }

  function go(change) {
    Object.assign(state, change);
    document.body.dataset.ready = "false";
    render();
  }

  // base64url of bytes (RFC 4648 §5, no padding).
  function base64url(bytes) {
    let text = "";
    for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  const randomText = () => base64url(crypto.getRandomValues(new Uint8Array(32)));
  const redirectUri = () => location.origin + location.pathname;

  // Off to the issuer: the verifier and state stay in this tab.
  async function startSignIn() {
    if (!signIn) return;
    if (!window.crypto || !crypto.subtle) {
      showStatus("Signing in needs a secure page (HTTPS, or this machine's loopback address).", true);
      return;
    }
    const verifier = randomText();
    const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    const stateText = randomText();
    sessionStorage.setItem(SIGN_IN_KEY, JSON.stringify({ verifier, state: stateText, hash: location.hash }));
    const q = new URLSearchParams({
      response_type: "code", client_id: signIn.clientId, redirect_uri: redirectUri(),
      scope: signIn.scope, state: stateText, code_challenge: challenge, code_challenge_method: "S256",
    });
    location.assign(signIn.authorizationEndpoint + (signIn.authorizationEndpoint.includes("?") ? "&" : "?") + q);
  }

  // Back from the issuer (?code=…&state=… or ?error=…): the code for a
  // token, then the query is dropped from the address and the view restored.
  async function finishSignIn() {
    const query = new URLSearchParams(location.search);
    if (!query.has("code") && !query.has("error")) return;
    const pending = JSON.parse(sessionStorage.getItem(SIGN_IN_KEY) || "null");
    sessionStorage.removeItem(SIGN_IN_KEY);
    history.replaceState(null, "", location.pathname + ((pending && pending.hash) || location.hash));
    if (!pending || query.get("state") !== pending.state) {
      throw new Error("Sign-in failed: this answer does not belong to a sign-in started in this tab.");
    }
    if (query.has("error")) {
      throw new Error("Sign-in failed: " + (query.get("error_description") || query.get("error")));
    }
    if (!signIn) throw new Error("Sign-in failed: the service no longer names an issuer.");
    const response = await fetch(signIn.tokenEndpoint, {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "authorization_code", code: query.get("code"), redirect_uri: redirectUri(),
        client_id: signIn.clientId, code_verifier: pending.verifier,
      }),
      cache: "no-store",
      credentials: "omit",
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok || !body.access_token) {
      throw new Error("Sign-in failed: " + (body.error_description || body.error || response.status));
    }
    sessionStorage.setItem(TOKEN_KEY, body.access_token);
  }

  async function loadSignIn() {
    try {
      const response = await fetch("sign-in.json", { cache: "no-store" });
      if (response.ok) signIn = (await response.json()).signIn;
    } catch (_) { /* the token form still works */ }
    $("signin").hidden = !signIn;
    if (signIn) $("signin").title = "Sign in at " + signIn.issuer;
  }

  $("signin").addEventListener("click", () => {
    startSignIn().catch((error) => showStatus(error.message, true));
  });
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    go({});
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    go({});
  });
  for (const button of document.querySelectorAll("#views button")) {
    button.addEventListener("click", () => {
      const view = button.dataset.view;
      go({ view, period: VIEWS[view].periods[0], datetime: "" });
    });
  }
  $("period").addEventListener("change", () => go({ period: $("period").value, datetime: "" }));
  $("tz").addEventListener("change", () => go({ tz: $("tz").value, datetime: "" }));
  $("datetime").addEventListener("change", () => go({ datetime: $("datetime").value.trim() }));
  $("prev").addEventListener("click", () => links && go({ datetime: datetimeOf(links.prev) }));
  $("next").addEventListener("click", () => links && go({ datetime: datetimeOf(links.next) }));
  window.addEventListener("hashchange", () => { readHash(); render(); });

  (async function start() {
    await loadSignIn();
    try {
      await finishSignIn();
    } catch (error) {
      readHash();
      fillControls();
      showStatus(error.message, true);
      document.body.dataset.ready = "error";
      return;
    }
    readHash();
    render();
  })();
})();
