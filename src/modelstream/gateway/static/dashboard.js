/* modelstream dashboard: polls /api/v1/services/{service}/dashboard and updates in place.
 *
 * Hand-written, no framework; charts are uPlot (vendored, see NOTICE.md). Everything is
 * loaded from this origin. State the tests read: window.modelstreamDashboard.
 */
(function () {
  "use strict";

  var POLL_MS = 1500;
  var SERVICES_MS = 10000;
  var PALETTE = ["#2563eb", "#16a34a", "#f59e0b", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#0f766e"];
  var SPECIAL = { fallback: "#9ca3af", none: "#dc2626" };

  var state = {
    service: null,
    services: [],
    token: sessionStorage.getItem("modelstream.token") || null,
    charts: {},
    answerKeys: "",
    colors: {},
    polls: 0,
    last: null,
    timer: null,
    blocked: false,
  };
  window.modelstreamDashboard = state;

  // -- small helpers ---------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function esc(value) {
    return String(value == null ? "" : value).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function fmtMs(v) {
    if (v == null || isNaN(v)) return "–";
    if (v < 1) return v.toFixed(2) + " ms";
    if (v < 10) return v.toFixed(1) + " ms";
    if (v < 10000) return Math.round(v) + " ms";
    return (v / 1000).toFixed(1) + " s";
  }

  function fmtRate(v) {
    if (v == null) return "–";
    if (v === 0) return "0";
    if (v < 10) return v.toFixed(1);
    return Math.round(v).toLocaleString();
  }

  function fmtPct(v, digits) {
    return v == null || isNaN(v) ? "–" : (100 * v).toFixed(digits == null ? 1 : digits) + "%";
  }

  function fmtNum(v) { return v == null ? "–" : Number(v).toLocaleString(); }

  function ago(ms, now) {
    var s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  function hms(seconds) {
    var d = new Date(seconds * 1000);
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map(function (n) {
      return n < 10 ? "0" + n : "" + n;
    }).join(":");
  }

  function clock(ms) {
    return ms ? new Date(ms).toLocaleString() : "";
  }

  function colorOf(name) {
    if (SPECIAL[name]) return SPECIAL[name];
    if (!state.colors[name]) {
      var used = Object.keys(state.colors).length;
      state.colors[name] = PALETTE[used % PALETTE.length];
    }
    return state.colors[name];
  }

  function setStatus(kind, text) {
    $("status-dot").className = "dot " + kind;
    $("status-text").textContent = text;
  }

  function api(path) {
    var headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    return fetch(path, { headers: headers, cache: "no-store" }).then(function (r) {
      if (r.status === 401) {
        state.blocked = true;
        $("login").classList.remove("hidden");
        throw new Error("unauthorized");
      }
      return r.json().then(function (body) {
        if (!r.ok) throw new Error(body.error || "HTTP " + r.status);
        return body;
      });
    });
  }

  // -- charts ------------------------------------------------------------------------------

  function axes(format) {
    var grid = { stroke: "#eef0f4", width: 1 };
    return [
      {
        stroke: "#6b7385", grid: grid, ticks: { stroke: "#e3e7ee", width: 1 }, font: "11px sans-serif",
        values: function (u, splits) { return splits.map(hms); },
      },
      {
        stroke: "#6b7385", grid: grid, ticks: { show: false }, size: 56, font: "11px sans-serif",
        values: function (u, splits) { return splits.map(format); },
      },
    ];
  }

  function chart(id, series, yRange, format) {
    var el = $(id);
    var opts = {
      width: Math.max(200, el.clientWidth),
      height: 200,
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      legend: { live: true },
      scales: { x: { time: true }, y: { range: yRange } },
      axes: axes(format),
      series: [{ value: function (u, v) { return v == null ? "–" : hms(v); } }].concat(series),
    };
    var empty = [[]].concat(series.map(function () { return []; }));
    return new uPlot(opts, empty, el);
  }

  function upTo(min) {
    return function (u, lo, hi) { return [0, hi > 0 ? hi * 1.15 : min]; };
  }

  function line(label, color, format, fill) {
    return {
      label: label, stroke: color, width: 1.75, fill: fill || undefined, spanGaps: false,
      points: { show: false }, value: function (u, v) { return v == null ? "–" : format(v); },
    };
  }

  function makeCharts() {
    destroyCharts();
    state.charts.throughput = chart("chart-throughput", [
      line("requests/s", "#2563eb", fmtRate, "rgba(37, 99, 235, 0.08)"),
      line("misses/s", "#dc2626", fmtRate),
    ], upTo(1), function (v) { return fmtRate(v); });
    state.charts.latency = chart("chart-latency", [
      line("p50", "#0891b2", fmtMs),
      line("p99", "#9333ea", fmtMs),
    ], upTo(1), function (v) { return v > 0 && v < 1 ? v.toFixed(1) : Math.round(v) + ""; });
    state.answerKeys = "";
  }

  function destroyCharts() {
    Object.keys(state.charts).forEach(function (k) {
      if (state.charts[k]) state.charts[k].destroy();
    });
    state.charts = {};
  }

  function answersChart(keys) {
    // Stacked shares: series i is the cumulative share of keys[0..i]; drawn top first so
    // each band's fill covers only its own slice.
    var raw = {};
    var series = keys.slice().reverse().map(function (name) {
      return {
        label: name, stroke: colorOf(name), width: 1, fill: colorOf(name) + "cc",
        points: { show: false },
        value: function (u, v, si, idx) {
          var r = raw[name];
          return idx == null || !r || r[idx] == null ? "–" : fmtPct(r[idx], 0);
        },
      };
    });
    if (state.charts.answers) state.charts.answers.destroy();
    var c = chart("chart-answers", series, function () { return [0, 1]; }, function (v) { return Math.round(v * 100) + "%"; });
    c.raw = raw;
    state.charts.answers = c;
    state.answerKeys = keys.join("|");
  }

  function updateCharts(view) {
    var s = view.series;
    state.charts.throughput.setData([s.t, s.requests, s.misses]);
    state.charts.latency.setData([s.t, s.p50_ms, s.p99_ms]);
    var order = view.models.map(function (m) { return m.ref; });
    var keys = Object.keys(s.answers).sort(function (a, b) {
      var ia = order.indexOf(a), ib = order.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || (a < b ? -1 : 1);
    });
    if (keys.join("|") !== state.answerKeys || !state.charts.answers) answersChart(keys);
    var totals = s.t.map(function (_, i) {
      return keys.reduce(function (acc, k) { return acc + s.answers[k][i]; }, 0);
    });
    var cumulative = keys.map(function () { return []; });
    var raw = state.charts.answers.raw;
    keys.forEach(function (k) { raw[k] = []; });
    s.t.forEach(function (_, i) {
      var acc = 0;
      keys.forEach(function (k, j) {
        var share = totals[i] ? s.answers[k][i] / totals[i] : null;
        raw[k].push(share);
        acc += share || 0;
        cumulative[j].push(totals[i] ? acc : null);
      });
    });
    state.charts.answers.setData([s.t].concat(cumulative.reverse()));
    Object.keys(state.charts).forEach(function (k) { showLatest(state.charts[k]); });
  }

  function showLatest(c) {
    // The legend follows the cursor; away from the chart it shows the latest second.
    if (c.cursor.left != null && c.cursor.left >= 0) return;
    var n = c.data[0].length;
    if (n) c.setLegend({ idx: n - 1 });
  }

  function resizeCharts() {
    Object.keys(state.charts).forEach(function (k) {
      var c = state.charts[k];
      var width = Math.max(200, c.root.parentNode.clientWidth);
      if (Math.abs(width - c.width) > 2) c.setSize({ width: width, height: 200 });
    });
  }

  // -- panels ----------------------------------------------------------------------------

  function renderHeading(view) {
    var d = view.deployment;
    var champion = d.models.filter(function (m) { return m.role === "champion"; })[0];
    $("service-name").textContent = view.service;
    $("deployment-line").textContent =
      (champion ? "champion " + champion.name + "@" + champion.version + " · " : "") +
      d.models.length + " live version" + (d.models.length === 1 ? "" : "s") +
      " · policy " + d.policy.kind + " · deadline " + d.deadline_ms + " ms · revision " + d.revision;
    $("sources").textContent = "traffic from " + view.sources.series + " · scorer stats from " +
      view.sources.stats + (view.sources.monitor ? " · monitor in process" : "");
  }

  function renderKpis(view) {
    var c = view.current;
    $("kpi-rps").textContent = fmtRate(c.requests_per_s);
    $("kpi-rps-sub").textContent = fmtNum(c.total) + " answered in the last " + Math.round(c.horizon_s / 60) + " min";
    $("kpi-p50").textContent = fmtMs(c.p50_ms);
    $("kpi-p99").textContent = fmtMs(c.p99_ms);
    $("kpi-p99-sub").textContent = "deadline " + view.deployment.deadline_ms + " ms";
    var misses = $("kpi-misses");
    misses.textContent = fmtNum(c.total_misses);
    misses.className = "kpi-value" + (c.misses_per_s > 0 ? " bad" : "");
    $("kpi-misses-sub").textContent = fmtRate(c.misses_per_s) + "/s now · " +
      (c.total ? fmtPct(c.total_misses / c.total, 2) : "–") + " of answers";
    $("kpi-late").textContent = fmtNum(view.late.count);
    $("kpi-late-sub").textContent = "events on " + view.service + ".late";
    var alerts = $("kpi-alerts");
    alerts.textContent = fmtNum(view.alerts.length);
    alerts.className = "kpi-value" + (view.alerts.length ? " warn" : "");
    $("kpi-alerts-sub").textContent = view.alerts.length ? "latest " + ago(view.alerts[0].at, view.at) : "none raised";
  }

  function quality(m, monitored) {
    if (!monitored) return '<span class="muted">no labels yet</span>';
    if (!m.primary || !m.quality || m.quality[m.primary] == null) {
      return '<span class="muted">no labels yet</span>';
    }
    return esc(m.primary) + " <b>" + Number(m.quality[m.primary]).toFixed(3) + "</b>" +
      ' <span class="muted small">n=' + fmtNum(m.labelled) + "</span>";
  }

  function agreement(m) {
    if (!m.agreement.length) return '<span class="muted">–</span>';
    return m.agreement.map(function (a) {
      return '<span class="chip" title="' + esc(a.n + " requests") + '">' + esc(a.with) + " " + fmtPct(a.agreement) + "</span>";
    }).join("");
  }

  function scoreDrift(m) {
    if (!m.score_drift.length) return '<span class="muted">–</span>';
    return m.score_drift.map(function (d) {
      var cls = d.drifted ? "chip bad" : "chip ok";
      return '<span class="' + cls + '" title="' + esc("against " + d.against) + '">PSI ' +
        (d.psi == null ? "–" : d.psi.toFixed(3)) + "</span>";
    }).join("");
  }

  function renderModels(view) {
    var monitored = view.sources.monitor;
    $("models-note").textContent = monitored ? "quality over the monitor's window" :
      "quality and agreement appear when a monitor of this service runs with the gateway";
    var rows = view.models.map(function (m) {
      var lat = m.latency_ms || {};
      var share = m.answer_share;
      var role = m.live ? m.role : "retired";
      return "<tr>" +
        '<td class="ref"><span class="swatch" style="background:' + colorOf(m.ref) + '"></span>' + esc(m.ref) + "</td>" +
        '<td><span class="badge ' + esc(role) + '">' + esc(role) + "</span></td>" +
        '<td><span class="bar"><span style="width:' + Math.round(100 * (share || 0)) + '%"></span></span>' + fmtPct(share) + "</td>" +
        '<td class="num">' + fmtNum(m.invocations) + "</td>" +
        '<td class="num">' + fmtNum(m.errors) + "</td>" +
        '<td class="num">' + fmtMs(lat.p50) + "</td>" +
        '<td class="num">' + fmtMs(lat.p99) + "</td>" +
        "<td>" + quality(m, monitored) + "</td>" +
        "<td>" + agreement(m) + "</td>" +
        "<td>" + scoreDrift(m) + "</td>" +
        "</tr>";
    });
    $("models").tBodies[0].innerHTML = rows.join("") ||
      '<tr><td colspan="10" class="empty">no model versions yet</td></tr>';
  }

  var KIND_LABEL = {
    published: "published", deployed: "deployed", promoted: "promoted",
    rolled_back: "rolled back", policy: "policy", changed: "changed",
  };

  function renderTimeline(view) {
    var items = view.timeline.map(function (e) {
      return '<li data-kind="' + esc(e.kind) + '"><span class="mark ' + esc(e.kind) + '"></span>' +
        '<div><span class="kind">' + esc(KIND_LABEL[e.kind] || e.kind) + "</span>" +
        '<span class="what">' + esc(e.text) + "</span></div>" +
        '<div class="meta" title="' + esc(clock(e.at)) + '">' + esc(ago(e.at, view.at)) +
        (e.revision ? " · revision " + esc(e.revision) : "") +
        (e.reason ? " · " + esc(e.reason) : "") + "</div></li>";
    });
    $("timeline").innerHTML = items.join("") || '<li class="empty">no events yet</li>';
  }

  function renderAlerts(view) {
    var items = view.alerts.map(function (a) {
      return '<li><div><span class="chip bad">' + esc(a.kind) + "</span>" + esc(a.message) + "</div>" +
        '<div class="meta" title="' + esc(clock(a.at)) + '">' + esc(ago(a.at, view.at)) +
        (a.model ? " · " + esc(a.model) : "") + "</div></li>";
    });
    $("alerts").innerHTML = items.join("") ||
      '<li class="empty">no alerts on ' + esc(view.service) + ".alerts</li>";
    var snap = view.monitor;
    if (!snap) {
      $("drift").innerHTML = '<div class="empty">no labels yet: drift is measured by the monitor of ' +
        esc(view.service) + " when it runs with the gateway</div>";
      return;
    }
    var rows = snap.input_drift.map(function (d) {
      return "<tr><td class=\"ref\">" + esc(d.subject) + "</td><td>" + esc(d.against) + "</td>" +
        '<td class="num">' + (d.psi == null ? "–" : d.psi.toFixed(3)) + "</td>" +
        '<td class="num">' + (d.ks_statistic == null ? "–" : d.ks_statistic.toFixed(3)) + "</td>" +
        "<td>" + (d.drifted ? '<span class="chip bad">drifted</span>' : '<span class="chip ok">stable</span>') + "</td></tr>";
    });
    $("drift").innerHTML = rows.length ?
      "<table class=\"data\"><thead><tr><th>Feature</th><th>Against</th><th class=\"num\">PSI</th><th class=\"num\">KS</th><th></th></tr></thead><tbody>" +
      rows.join("") + "</tbody></table>" :
      '<div class="empty">no input drift measured yet (the monitor needs a reference window)</div>';
  }

  // -- polling ---------------------------------------------------------------------------

  function renderServices() {
    var nav = $("services");
    nav.innerHTML = state.services.map(function (s) {
      var cls = s.service === state.service ? "active" : "";
      return '<a class="' + cls + '" href="#service=' + encodeURIComponent(s.service) + '">' + esc(s.service) + "</a>";
    }).join("");
  }

  function chooseService() {
    var match = /service=([^&]+)/.exec(location.hash);
    var wanted = match ? decodeURIComponent(match[1]) : null;
    var names = state.services.map(function (s) { return s.service; });
    var next = wanted && names.indexOf(wanted) >= 0 ? wanted : (state.service && names.indexOf(state.service) >= 0 ? state.service : names[0]);
    if (next !== state.service) {
      state.service = next || null;
      state.colors = {};
      makeCharts();
    }
    renderServices();
  }

  function loadServices() {
    return api("/api/v1/dashboard").then(function (body) {
      state.services = body.services;
      chooseService();
      if (!state.service) {
        $("service-name").textContent = "no services";
        $("deployment-line").textContent = "deploy a model: modelstream deploy --service S --champion NAME@VERSION";
      }
    });
  }

  function poll() {
    clearTimeout(state.timer);
    if (state.blocked) return;
    var service = state.service;
    var work = service ? api("/api/v1/services/" + encodeURIComponent(service) + "/dashboard") : Promise.resolve(null);
    work.then(function (view) {
      if (view && view.service === state.service) {
        state.last = view;
        state.polls += 1;
        renderHeading(view);
        renderKpis(view);
        updateCharts(view);
        renderModels(view);
        renderTimeline(view);
        renderAlerts(view);
        setStatus("live", "live · " + new Date(view.at).toLocaleTimeString());
      }
    }).catch(function (err) {
      if (!state.blocked) setStatus("down", "disconnected: " + err.message);
    }).then(function () {
      state.timer = setTimeout(poll, POLL_MS);
    });
  }

  function start() {
    var m = /token=([^&]+)/.exec(location.hash);
    if (m) {
      state.token = decodeURIComponent(m[1]);
      sessionStorage.setItem("modelstream.token", state.token);
      history.replaceState(null, "", location.pathname);
    }
    loadServices().then(poll, function (err) {
      if (!state.blocked) setStatus("down", "disconnected: " + err.message);
      setTimeout(start, SERVICES_MS);
    });
  }

  $("login-form").addEventListener("submit", function (event) {
    event.preventDefault();
    state.token = $("login-token").value.trim();
    sessionStorage.setItem("modelstream.token", state.token);
    state.blocked = false;
    $("login").classList.add("hidden");
    start();
  });
  window.addEventListener("hashchange", function () { chooseService(); poll(); });
  window.addEventListener("resize", resizeCharts);
  setInterval(function () { if (!state.blocked) loadServices().catch(function () {}); }, SERVICES_MS);

  start();
})();
