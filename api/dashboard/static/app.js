/* genqueue ops dashboard: asks for an ops key, loads /v1/stats and /v1/jobs, then follows the job
   event stream (GET /v1/events, Server-Sent Events read through fetch so the key goes in a header):
   each job.updated event reloads the figures (at most once a second) instead of polling. */
(function () {
  "use strict";
  var KEY = "gq_ops_key";
  var STATUS_COLORS = {queued: "#8b93a7", submitting: "#c9a227", running: "#3b82f6", storing: "#a855f7",
    succeeded: "#22c55e", failed: "#ef4444", canceled: "#64748b"};
  var PHASE_COLORS = {queue_time: "#8b93a7", start_time: "#c9a227", predict_time: "#3b82f6", total_time: "#38bdf8",
    detection_lag: "#f97316", storage_time: "#a855f7", end_to_end_time: "#22c55e"};
  var state = {stream: null, retry: null, pending: null, lastEventId: null, live: false, busy: false,
               selected: null, blobUrls: [], lastStats: null};

  function $(id) { return document.getElementById(id); }
  function h(tag, attrs) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "cls") node.className = attrs[k];
      else if (attrs[k] !== undefined && attrs[k] !== null) node.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }
  function secs(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 3600) return (v / 3600).toFixed(1) + " h";
    if (v >= 120) return (v / 60).toFixed(1) + " m";
    return v.toFixed(v < 10 ? 3 : 1) + " s";
  }
  function money(v) { return "$" + (v || 0).toFixed(v >= 100 ? 0 : 4); }
  function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }
  function pill(status) { return h("span", {cls: "pill s-" + status, text: status}); }

  function key() { return sessionStorage.getItem(KEY); }
  function api(path) {
    return fetch(path, {headers: {Authorization: "Bearer " + key()}}).then(function (r) {
      if (r.status === 401 || r.status === 403) {
        var err = new Error(r.status === 401 ? "This key is not valid." : "This key is not an ops or admin key.");
        err.auth = true; throw err;
      }
      if (!r.ok) return r.json().catch(function () { return {}; }).then(function (b) {
        throw new Error((b.error && b.error.message) || ("HTTP " + r.status));
      });
      return r.json();
    });
  }

  function post(path, body) {
    return fetch(path, {method: "POST", body: JSON.stringify(body),
                        headers: {Authorization: "Bearer " + key(), "Content-Type": "application/json"}})
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (b) {
          if (r.status === 403) throw new Error("Retrying needs an admin key.");
          if (!r.ok) throw new Error((b.error && b.error.message) || ("HTTP " + r.status));
          return b;
        });
      });
  }

  // A failures group's retry button: count the failed jobs of that code (dry run), confirm, then one bulk
  // retry (POST /v1/jobs/bulk); the answer's count and id are shown under the table.
  function retryGroup(code, btn) {
    var filter = {status: "failed", error_code: code};
    var note = $("failures-note");
    btn.disabled = true;
    post("/v1/jobs/bulk", {action: "retry", filter: filter, dry_run: true}).then(function (dry) {
      if (!dry.matched) { note.textContent = "No failed " + code + " jobs to retry."; return null; }
      if (!window.confirm("Retry " + dry.matched + " failed jobs with error " + code + "?")) return null;
      return post("/v1/jobs/bulk", {action: "retry", filter: filter}).then(function (b) {
        note.textContent = "Retry of " + b.matched + " " + code + " jobs started (" + b.id + ").";
      });
    }).catch(function (e) { note.textContent = e.message; })
      .then(function () { btn.disabled = false; });
  }

  function showLogin(message) {
    stop();
    $("main").classList.add("hidden");
    $("login").classList.remove("hidden");
    $("login-error").textContent = message || "";
    $("key-input").focus();
  }
  function showMain() { $("login").classList.add("hidden"); $("main").classList.remove("hidden"); }

  function tile(name, value, label, extra, cls) {
    return h("div", {cls: "tile " + (cls || ""), "data-tile": name},
      h("div", {cls: "label", text: label}), h("div", {cls: "value", text: String(value)}),
      h("div", {cls: "extra", text: extra || "", title: extra || ""}));
  }

  function renderTiles(s) {
    var box = $("tiles"); box.textContent = "";
    ["queued", "submitting", "running", "storing", "succeeded", "failed", "canceled"].forEach(function (st) {
      box.appendChild(tile(st, s.status_counts[st] || 0, st, "", "s-" + st));
    });
    var q = s.queue, f = s.in_flight;
    box.appendChild(tile("queue_depth", q.depth, "queue depth", "oldest " + secs(q.oldest_age_seconds)));
    box.appendChild(tile("in_flight", f.total, "in flight",
      "sub " + f.submitting + " · start " + f.starting + " · proc " + f.processing + " · store " + f.storing));
    box.appendChild(tile("stuck", s.stuck.count, "stuck", "> " + s.stuck.stuck_after_seconds + " s overdue",
      s.stuck.count ? "alert" : ""));
    box.appendChild(tile("spend", money(s.cost.estimated_spend), "est. spend",
      s.cost.billed_seconds.toFixed(1) + " s billed"));
  }

  function renderCharts(s) {
    var tkeys = ["succeeded", "failed", "canceled"].map(function (k) { return {key: k, label: k, color: STATUS_COLORS[k]}; });
    GQCharts.stackedBars($("chart-throughput"), s.throughput.series, tkeys, s.throughput.bucket_seconds);
    legend($("legend-throughput"), tkeys);
    var c = s.creates;
    $("creates-line").textContent = "creates: " + c.total + " in window · avg " + c.avg_per_min.toFixed(2) +
      "/min · peak " + c.peak_per_min + "/min of limit " + c.limit_per_min + "/min (" +
      ((c.peak_utilization || 0) * 100).toFixed(0) + "%) · finished/min: ok " + s.throughput.per_min.succeeded.toFixed(2) +
      ", failed " + s.throughput.per_min.failed.toFixed(2);
    var lkeys = Object.keys(PHASE_COLORS).map(function (k) { return {key: k, label: k.replace(/_time$/, "").replace(/_/g, " "), color: PHASE_COLORS[k]}; });
    GQCharts.lines($("chart-latency"), s.latency.series, lkeys, s.window.bucket_seconds);
    legend($("legend-latency"), lkeys);
  }

  function legend(box, keys) {
    box.textContent = "";
    keys.forEach(function (k) {
      var sw = h("i", {cls: "sw"}); sw.style.background = k.color;
      box.appendChild(h("span", {}, sw, k.label));
    });
  }

  function table(el, head, rows) {
    el.textContent = "";
    var tr = h("tr");
    head.forEach(function (c) { tr.appendChild(h("th", {text: c})); });
    el.appendChild(h("thead", {}, tr));
    var body = h("tbody");
    if (!rows.length) body.appendChild(h("tr", {}, h("td", {colspan: head.length, cls: "muted", text: "none"})));
    rows.forEach(function (r) { body.appendChild(r); });
    el.appendChild(body);
  }
  function row(cells, attrs) {
    return h.apply(null, ["tr", attrs || {}].concat(cells.map(function (c) {
      return c instanceof Node ? h("td", {}, c) : h("td", {text: c === null || c === undefined ? "–" : String(c)});
    })));
  }

  function renderTables(s) {
    table($("phases"), ["phase", "n", "p50", "p95", "p99"], Object.keys(s.latency.phases).map(function (k) {
      var p = s.latency.phases[k];
      return row([k, p.count || 0, secs(p.p50), secs(p.p95), secs(p.p99)]);
    }));
    table($("failures"), ["code", "n", "latest message", ""], s.failures.map(function (f) {
      var btn = h("button", {cls: "retry-btn", type: "button", "data-code": f.error_code, text: "retry"});
      btn.addEventListener("click", function () { retryGroup(f.error_code, btn); });
      return row([f.error_code, f.count, h("span", {cls: "msg", title: f.latest_message || "", text: f.latest_message || "–"}),
                  btn], {"data-code": f.error_code});
    }));
    var cb = s.callbacks || {};
    table($("callbacks"), ["pending", "delivered", "gave up", "failed attempts"],
      [row([cb.pending || 0, cb.delivered || 0, cb.failed || 0, cb.failed_attempts || 0])]);
    table($("models"), ["model", "jobs", "ok", "failed", "p50 predict", "spend"], s.models.map(function (m) {
      var spend = (s.cost.by_model.filter(function (c) { return c.model === m.model; })[0] || {}).spend;
      return row([m.model, m.total, m.by_status.succeeded, m.by_status.failed, secs(m.p50_predict_time), money(spend)]);
    }));
    table($("keys"), ["key", "jobs", "billed", "spend"], s.cost.by_api_key.map(function (k) {
      return row([k.name || k.api_key_id || "–", k.jobs, secs(k.billed_seconds), money(k.spend)]);
    }));
    var sc = s.scheduling;
    if (sc) {
      $("dispatch").textContent = "dispatching " + sc.dispatch_per_min + "/min of a " + sc.create_budget_per_min +
        "/min create budget" + (sc.dispatch_share_of_budget != null ? " (" + Math.round(100 * sc.dispatch_share_of_budget) + "%)" : "");
      var names = {};
      s.cost.by_api_key.forEach(function (k) { names[k.api_key_id] = k.name; });
      table($("sched"), ["queued", "n"], Object.keys(sc.queued_by_priority).map(function (p) {
        return row(["priority " + p, sc.queued_by_priority[p]]);
      }).concat(Object.keys(sc.queued_by_key).map(function (k) {
        return row(["key " + (names[k] || k), sc.queued_by_key[k]]);
      })));
    }
    renderCost(s);
    var dl = $("model-list"); dl.textContent = "";
    s.models.forEach(function (m) { dl.appendChild(h("option", {value: m.model})); });
    var b = $("banner");
    var notes = [];
    if (s.cost.canceled.count) notes.push(s.cost.canceled.count + " canceled (billed " + money(s.cost.canceled.spend) + ")");
    if (s.cost.aborted.count) notes.push(s.cost.aborted.count + " aborted (not billed)");
    if (s.stuck.count) notes.push(s.stuck.count + " stuck: " + s.stuck.job_ids.slice(0, 3).join(", "));
    b.textContent = notes.join(" · ");
    b.classList.toggle("hidden", !notes.length);
  }

  function renderCost(s) {
    var c = s.cost;
    table($("cost-models"), ["model", "jobs", "price", "spend"], c.by_model.map(function (m) {
      var p = m.price || {};
      var price = [p.per_second ? "$" + p.per_second + "/s" : "", p.per_output ? "$" + p.per_output + "/output" : ""]
        .filter(Boolean).join(" + ") || "free";
      return row([m.model, m.jobs, price, money(m.spend)]);
    }));
    var days = c.by_day || [];
    GQCharts.stackedBars($("chart-cost-day"), days.map(function (d) { return {t: d.day, spend: d.spend}; }),
      [{key: "spend", label: "USD", color: "#6c8cff"}], 86400);
    table($("cost-days"), ["day", "jobs", "spend"], days.slice(-7).reverse().map(function (d) {
      return row([d.day, d.jobs, money(d.spend)]);
    }));
    var caps = s.spend_caps || [];
    table($("spend-caps"), ["key", "spent / limit", "state", "resets"], caps.map(function (k) {
      return row([k.name || k.api_key_id, money(k.spent) + " / " + money(k.limit) + " per " + k.period,
        h("span", {cls: "pill " + (k.reached ? "s-failed" : "s-succeeded"), text: k.reached ? "held" : "ok"}),
        new Date(k.resets_at).toLocaleString()], {"data-cap-key": k.name || k.api_key_id, "data-reached": String(k.reached)});
    }));
    var r = s.retention || {};
    $("retention-line").textContent = (r.outputs_deleted || 0) + " jobs' outputs deleted in window · " +
      (r.overdue || 0) + " overdue · next expiry " + (r.next_expiry_at ? new Date(r.next_expiry_at).toLocaleString() : "none");
  }

  function renderJobs(page) {
    table($("jobs-table"), ["created", "id", "status", "model", "predict", "end to end", "error"], page.jobs.map(function (j) {
      var r = row([new Date(j.created_at).toLocaleTimeString(), h("code", {text: j.id}), pill(j.status), j.model || j.deployment || "–",
        secs(j.metrics.predict_time), secs(j.metrics.end_to_end_time), j.error ? j.error.code : ""],
        {"data-job-id": j.id, "data-status": j.status, cls: j.id === state.selected ? "sel" : ""});
      r.addEventListener("click", function () { openJob(j.id); });
      return r;
    }));
  }

  function timelinePhases(j) {
    var m = j.metrics, ms = function (iso) { return iso ? new Date(iso).getTime() : null; };
    var created = ms(j.created_at), submitted = ms(j.submitted_at), completed = ms(j.completed_at), finished = ms(j.finished_at);
    var submitStart = m.queue_time != null ? created + m.queue_time * 1000 : null;
    var started = completed && m.predict_time != null ? completed - m.predict_time * 1000
      : (submitted && m.start_time != null ? submitted + m.start_time * 1000 : null);
    var detected = completed && m.detection_lag != null ? completed + m.detection_lag * 1000 : null;
    var out = [];
    function add(label, a, b, color) { if (a != null && b != null && b >= a) out.push({label: label, start: a, end: b, color: color}); }
    add("queued", created, submitStart || submitted, PHASE_COLORS.queue_time);
    add("submitting", submitStart, submitted, STATUS_COLORS.submitting);
    add("starting", submitted, started, PHASE_COLORS.start_time);
    add("processing", started, completed, PHASE_COLORS.predict_time);
    add("detecting", completed, detected, PHASE_COLORS.detection_lag);
    add("storing", detected, finished, PHASE_COLORS.storage_time);
    if (!out.length && finished) add("end to end", created, finished, PHASE_COLORS.end_to_end_time);
    return out;
  }

  function renderDetail(j) {
    var box = $("job-detail"); box.textContent = ""; box.classList.remove("hidden");
    state.blobUrls.forEach(URL.revokeObjectURL); state.blobUrls = [];
    var close = h("button", {cls: "ghost close", type: "button", text: "×", title: "close"});
    close.addEventListener("click", function () { state.selected = null; box.classList.add("hidden"); });
    box.appendChild(h("div", {cls: "card-head"}, h("h3", {}, "Job ", h("code", {id: "detail-id", text: j.id})), close));
    box.appendChild(h("div", {cls: "kv"}, pill(j.status), h("span", {text: j.model || j.deployment || ""}),
      h("span", {cls: "muted", text: "prediction " + (j.prediction_id || "–") + " (" + (j.prediction_status || "–") + ")"})));
    if (j.error) box.appendChild(h("div", {cls: "errbox", id: "detail-error"}, h("b", {text: j.error.code}), " ", j.error.message || ""));
    var tl = h("div", {id: "job-timeline", cls: "timeline"});
    box.appendChild(h("h4", {text: "Timeline"})); box.appendChild(tl);
    GQCharts.timeline(tl, timelinePhases(j));
    var dl = h("dl", {cls: "metrics"});
    Object.keys(j.metrics).forEach(function (k) { dl.appendChild(h("dt", {text: k})); dl.appendChild(h("dd", {text: secs(j.metrics[k])})); });
    [["created", j.created_at], ["submitted", j.submitted_at], ["completed", j.completed_at], ["finished", j.finished_at]]
      .forEach(function (p) { dl.appendChild(h("dt", {text: p[0]})); dl.appendChild(h("dd", {text: when(p[1])})); });
    box.appendChild(h("h4", {text: "Metrics"})); box.appendChild(dl);
    if (j.input && j.input.prompt) box.appendChild(h("p", {cls: "prompt", text: "“" + j.input.prompt + "”"}));
    var outs = h("div", {cls: "outputs", id: "detail-outputs"});
    box.appendChild(outs);
    j.outputs.forEach(function (o) {
      var fig = h("figure", {}, h("figcaption", {cls: "muted", text: "#" + o.index + " " + o.content_type + " · " + o.size + " B"}));
      outs.appendChild(fig);
      if (!/^image\//.test(o.content_type)) return;
      fetch(o.url, {headers: {Authorization: "Bearer " + key()}}).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status); return r.blob();
      }).then(function (blob) {
        var u = URL.createObjectURL(blob); state.blobUrls.push(u);
        fig.insertBefore(h("img", {src: u, alt: "output " + o.index}), fig.firstChild);
      }).catch(function (e) { fig.appendChild(h("span", {cls: "error", text: "preview failed: " + e.message})); });
    });
  }

  function openJob(id) {
    state.selected = id;
    Array.prototype.forEach.call(document.querySelectorAll("#jobs-table tr[data-job-id]"), function (r) {
      r.classList.toggle("sel", r.getAttribute("data-job-id") === id);
    });
    return api("/v1/jobs/" + encodeURIComponent(id)).then(renderDetail).catch(handle);
  }

  function jobsPath() {
    var q = new URLSearchParams({limit: "50"});
    if ($("filter-status").value) q.set("status", $("filter-status").value);
    if ($("filter-model").value.trim()) q.set("model", $("filter-model").value.trim());
    return "/v1/jobs?" + q.toString();
  }
  function loadJobs() { return api(jobsPath()).then(renderJobs).catch(handle); }

  function handle(err) {
    if (err.auth) { stop(); sessionStorage.removeItem(KEY); showLogin(err.message); return; }
    $("updated").textContent = "error: " + err.message;
  }

  function refresh() {
    if (state.busy || !key()) return Promise.resolve();
    state.busy = true;
    var stats = api("/v1/stats?window=" + encodeURIComponent($("window").value)).then(function (s) {
      state.lastStats = s; showMain();
      renderTiles(s); renderCharts(s); renderTables(s);
      $("updated").textContent = "updated " + new Date().toLocaleTimeString() + (state.live ? " · live" : "");
    });
    var jobs = api(jobsPath()).then(renderJobs);
    var all = [stats, jobs];
    if (state.selected && !$("job-detail").classList.contains("hidden")) {
      all.push(api("/v1/jobs/" + encodeURIComponent(state.selected)).then(function (j) {
        if (["succeeded", "failed", "canceled"].indexOf(j.status) < 0 || $("detail-id") === null) renderDetail(j);
      }));
    }
    return Promise.all(all).catch(handle).then(function () { state.busy = false; });
  }

  // --- the event stream -------------------------------------------------------------------------
  function onFrame(text) {
    var id = null, ev = null, data = [];
    text.split("\n").forEach(function (line) {
      if (!line || line.charAt(0) === ":") return;
      var k = line.indexOf(":"), name = k < 0 ? line : line.slice(0, k), v = k < 0 ? "" : line.slice(k + 1);
      if (v.charAt(0) === " ") v = v.slice(1);
      if (name === "id") id = v; else if (name === "event") ev = v; else if (name === "data") data.push(v);
    });
    if (id) state.lastEventId = id;  // a reconnect resumes after it (Last-Event-ID): nothing is missed
    if (ev !== "job.updated" || !data.length) return;
    var j = JSON.parse(data.join("\n"));
    if (state.selected === j.id && !$("job-detail").classList.contains("hidden")) renderDetail(j);
    if (!state.pending) state.pending = setTimeout(function () { state.pending = null; refresh(); }, 1000);
  }

  function follow() {
    var ctl = new AbortController();
    state.stream = ctl;
    var headers = {Authorization: "Bearer " + key(), Accept: "text/event-stream"};
    if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
    fetch("/v1/events", {headers: headers, signal: ctl.signal, cache: "no-store"}).then(function (r) {
      if (r.status === 401 || r.status === 403) {
        var e = new Error(r.status === 403 ? "not an ops or admin key" : "invalid key"); e.auth = true; throw e;
      }
      if (!r.ok || !r.body) throw new Error("events: HTTP " + r.status);
      state.live = true;
      var reader = r.body.getReader(), dec = new TextDecoder(), buf = "";
      function pump() {
        return reader.read().then(function (x) {
          if (x.done) return;
          buf += dec.decode(x.value, {stream: true}).replace(/\r\n?/g, "\n");
          var i;
          while ((i = buf.indexOf("\n\n")) >= 0) { onFrame(buf.slice(0, i)); buf = buf.slice(i + 2); }
          return pump();
        });
      }
      return pump();
    }).catch(function (err) {
      if (err.name === "AbortError") return;
      if (err.auth) { stop(); handle(err); return; }
    }).then(function () {
      state.live = false;
      if (state.stream === ctl && !ctl.signal.aborted) {  // ended or broke: resume shortly
        state.retry = setTimeout(function () { refresh(); follow(); }, 2000);
      }
    });
  }

  function start() {
    stop();
    refresh();
    if ($("auto").checked) follow();
  }
  function stop() {
    if (state.stream) state.stream.abort();
    state.stream = null;
    clearTimeout(state.retry); clearTimeout(state.pending);
    state.retry = state.pending = null;
    state.live = false;
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("login-form").addEventListener("submit", function (e) {
      e.preventDefault();
      sessionStorage.setItem(KEY, $("key-input").value.trim());
      $("key-input").value = "";
      start();
    });
    $("logout").addEventListener("click", function () { stop(); sessionStorage.removeItem(KEY); showLogin(""); });
    $("window").addEventListener("change", refresh);
    $("auto").addEventListener("change", start);
    $("filter-status").addEventListener("change", loadJobs);
    var t = null;
    $("filter-model").addEventListener("input", function () { clearTimeout(t); t = setTimeout(loadJobs, 300); });
    window.addEventListener("resize", function () { if (state.lastStats) renderCharts(state.lastStats); });
    if (key()) start(); else showLogin("");
  });
})();
