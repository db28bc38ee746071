// The web view of `sweep serve`: one page that reads its URL, asks /api/ and draws. Every
// string from the database goes into the page as text (textContent), never as HTML.
"use strict";

const main = document.getElementById("main");
const statusBox = document.getElementById("status");
const live = document.getElementById("live");
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
  "#17becf", "#bcbd22", "#7f7f7f"];
const STOPPED = "#9aa3ab";

// el("a", {href: "/x", class: "y"}, "text", child, ...): children that are strings become text.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// GET /api/...; a 503 (database away) shows in the banner and the caller tries again later.
async function api(path) {
  let response;
  try {
    response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  } catch (e) {
    showStatus("The sweep serve process cannot be reached (" + e.message + "); retrying…");
    throw new ApiError(0, "server unreachable");
  }
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const message = (body && body.error) || response.status + " " + response.statusText;
    if (response.status === 503 || response.status === 401) showStatus(message);
    throw new ApiError(response.status, message);
  }
  showStatus(null);
  return body;
}

function showStatus(message) {
  statusBox.hidden = !message;
  statusBox.textContent = message || "";
}

function crumbs(...parts) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(...parts.flatMap((p, i) => (i ? [" / ", p] : [p])));
}

const sweepHref = (name) => "/sweeps/" + encodeURIComponent(name);
const trialHref = (id) => "/trials/" + encodeURIComponent(id);
const statusCell = (status) => el("span", { class: "status-" + status }, status);
const fmt = (x) => (x === null || x === undefined ? "–" : typeof x === "number" ?
  (Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(4)))) : String(x));

// Repeats `step` every `ms` while the page shows this view; a failed step is retried.
let timers = [];
function every(ms, step) {
  const id = setInterval(() => step().catch(() => {}), ms);
  timers.push(id);
  live.textContent = "live";
}

function errorPage(e) {
  main.replaceChildren(el("h1", {}, e.status ? "Error " + e.status : "Error"),
    el("pre", { class: "error" }, e.message), el("p", {}, el("a", { href: "/" }, "All sweeps")));
}

// ---------------------------------------------------------------- sweeps
async function sweepsView() {
  crumbs(el("span", {}, "sweeps"));
  const box = el("div", {});
  main.replaceChildren(el("h1", {}, "Sweeps"), box);
  const draw = async () => {
    const data = await api("/api/sweeps");
    const rows = data.sweeps.map((s) => {
      const done = s.counts.done || 0;
      const pct = s.planned ? Math.min(100, (100 * s.settled) / s.planned) : 0;
      return el("tr", { "data-sweep": s.name },
        el("td", {}, el("a", { href: sweepHref(s.name) }, s.name)),
        el("td", {}, s.sampler || "–"), el("td", {}, s.pruner || "–"),
        el("td", { class: "num" }, s.trials),
        el("td", {}, Object.entries(s.counts).map(([k, v]) => k + " " + v).join(", ")),
        el("td", { class: "num" }, s.best === null || s.best === undefined ? "–" :
          fmt(s.best) + " " + (s.metric || "")),
        el("td", {}, s.started_at || s.created_at), el("td", {}, s.last_activity || "–"),
        el("td", {}, el("span", { class: "bar", title: s.settled + " of " + s.planned + " settled" },
          el("span", { style: "width:" + pct.toFixed(1) + "%" })), " " + done + " done"));
    });
    box.replaceChildren(rows.length ? el("div", { class: "table-wrap" }, el("table", { id: "sweeps" },
      el("thead", {}, el("tr", {}, ["sweep", "sampler", "pruner", "trials", "by status", "best",
        "started", "last activity", "progress"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows))) :
      el("p", { class: "muted" }, "No sweeps in " + data.db + " yet: `sweep run EXPERIMENT.toml` records one."));
  };
  await draw();
  every(2000, draw);
}

// ---------------------------------------------------------------- charts
// A line chart of one series per trial; hovering names the trial, clicking opens it.
function lineChart(title, xLabel, yLabel, xs, series, opts = {}) {
  const hover = el("div", { class: "hover" }, "hover a line for its trial; click to open it");
  const holder = el("div", {});
  const box = el("div", { class: "chart" }, el("h3", {}, title), holder, hover);
  let focused = null;
  const make = () => {
    const width = Math.max(260, holder.clientWidth || 460);
    const plot = new uPlot({
      width, height: opts.height || 260,
      legend: { show: false },
      cursor: { focus: { prox: 24 }, points: { size: 6 } },
      focus: { alpha: 0.25 },
      scales: { x: { time: false, distr: opts.logX ? 3 : 1 } },
      // Epochs and trial numbers are whole: no ticks between them.
      axes: [{ label: xLabel, incrs: opts.logX ? undefined : (xLabel === "epoch" || xLabel === "trial") ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000] : undefined },
        { label: yLabel, size: 56 }],
      series: [{}].concat(series.map((s, i) => ({
        label: s.label, stroke: s.color || PALETTE[i % PALETTE.length], width: s.width || 1.5,
        // A line of one or two points would not show: draw its points.
        points: { show: !!s.points || s.values.filter((v) => v !== null).length <= 2, size: 5, fill: s.color || PALETTE[i % PALETTE.length] },
        paths: s.points ? () => null : undefined, spanGaps: true,
      }))),
      hooks: {
        setSeries: [(u, i) => { focused = i; }],
        setCursor: [(u) => {
          const idx = u.cursor.idx;
          if (focused === null || focused === undefined || idx === null || idx === undefined) return;
          const s = series[focused - 1];
          if (!s) return;
          const y = u.data[focused][idx];
          hover.textContent = s.label + (y === null || y === undefined ? "" :
            " — " + xLabel + " " + fmt(u.data[0][idx]) + ", " + yLabel + " " + fmt(y));
        }],
      },
    }, [xs].concat(series.map((s) => s.values)), holder);
    plot.over.addEventListener("click", () => {
      const s = series[(focused || 0) - 1];
      const id = s && (s.idAt ? s.idAt(plot.cursor.idx) : s.id);
      if (id !== undefined && id !== null) location.href = trialHref(id);
    });
    return plot;
  };
  requestAnimationFrame(() => { box.plot = make(); });
  box.update = (newXs, newSeries) => {
    if (box.plot && newSeries.length === series.length) {
      series = newSeries;
      box.plot.setData([newXs].concat(newSeries.map((s) => s.values)));
    } else {
      series = newSeries; xs = newXs;
      if (box.plot) box.plot.destroy();
      holder.replaceChildren();
      box.plot = make();
    }
  };
  return box;
}

// Scatter: points (x, y, outcome, id); done in colour, pruned and paused in grey.
function scatterChart(title, xLabel, yLabel, points, opts = {}) {
  const sorted = points.slice().sort((a, b) => a[0] - b[0]);
  const xs = sorted.map((p) => p[0]);
  const ids = sorted.map((p) => p[3]);
  const pick = (keep) => sorted.map((p) => (keep(p[2]) ? p[1] : null));
  const series = [
    { label: "done", values: pick((o) => o === "done"), points: true, color: PALETTE[0], idAt: (i) => ids[i] },
    { label: "pruned or paused", values: pick((o) => o !== "done"), points: true, color: STOPPED, idAt: (i) => ids[i] },
  ];
  if (opts.line) series.push({ label: "best so far", values: opts.line(sorted), color: PALETTE[1], width: 2 });
  const chart = lineChart(title, xLabel, yLabel, xs, series, opts);
  const hover = chart.querySelector(".hover");
  hover.textContent = "hover a point for its trial; click to open it";
  const plotHover = () => {
    const u = chart.plot;
    if (!u || u.cursor.idx === null || u.cursor.idx === undefined) return;
    const i = u.cursor.idx;
    hover.textContent = "trial #" + ids[i] + ": " + xLabel + " " + fmt(xs[i]) + ", " + yLabel + " " +
      fmt(sorted[i][1]) + " (" + sorted[i][2] + ")";
  };
  requestAnimationFrame(() => requestAnimationFrame(() => {
    if (chart.plot) chart.plot.over.addEventListener("mousemove", plotHover);
  }));
  return chart;
}

// One pair of objectives: every finished trial, red where it is on the front.
function frontChart(title, xLabel, yLabel, points) {
  const sorted = points.slice().sort((a, b) => a[0] - b[0]);
  const ids = sorted.map((p) => p[3]);
  const series = [
    { label: "on the front", values: sorted.map((p) => (p[2] ? p[1] : null)), points: true, color: PALETTE[1], idAt: (i) => ids[i] },
    { label: "dominated", values: sorted.map((p) => (p[2] ? null : p[1])), points: true, color: STOPPED, idAt: (i) => ids[i] },
  ];
  return lineChart(title, xLabel, yLabel, sorted.map((p) => p[0]), series);
}

// Parallel coordinates over the searched parameters, drawn on a canvas; each trial a line,
// coloured by its value (darker is better). Hover names the nearest trial, click opens it.
function parallelChart(params, panels, metric, higher) {
  const byId = new Map();
  for (const panel of panels) {
    for (const [x, y, outcome, id] of panel.points) {
      if (!byId.has(id)) byId.set(id, { id, y, outcome, at: {} });
      byId.get(id).at[panel.name] = x;
    }
  }
  const axes = panels.map((p) => ({ name: p.name, log: p.log }));
  axes.push({ name: metric, log: false });
  const trials = [...byId.values()].map((t) => ({ ...t, at: { ...t.at, [metric]: t.y } }));
  const canvas = el("canvas", { class: "parallel" });
  const hover = el("div", { class: "hover" }, "hover a line for its trial; click to open it");
  const box = el("div", { class: "chart" }, el("h3", {}, "Parallel coordinates (darker: better " + metric + ")"), canvas, hover);
  const key = (a, v) => (a.log ? Math.log(v) : v);
  const range = axes.map((a) => {
    const vs = trials.map((t) => t.at[a.name]).filter((v) => v !== undefined).map((v) => key(a, v));
    return [Math.min(...vs), Math.max(...vs)];
  });
  const ys = trials.map((t) => t.y);
  const [lo, hi] = [Math.min(...ys), Math.max(...ys)];
  let lines = [];
  const draw = (highlight) => {
    const w = (canvas.width = canvas.clientWidth * devicePixelRatio);
    const h = (canvas.height = canvas.clientHeight * devicePixelRatio);
    const g = canvas.getContext("2d");
    const pad = 30 * devicePixelRatio;
    const xAt = (i) => pad + (i * (w - 2 * pad)) / Math.max(1, axes.length - 1);
    const yAt = (i, v) => {
      const [a, b] = range[i];
      const f = b > a ? (key(axes[i], v) - a) / (b - a) : 0.5;
      return h - pad - f * (h - 2 * pad);
    };
    lines = trials.map((t) => ({ id: t.id, pts: axes.map((a, i) => (t.at[a.name] === undefined ? null : [xAt(i), yAt(i, t.at[a.name])])) }));
    trials.forEach((t, n) => {
      const score = hi > lo ? (t.y - lo) / (hi - lo) : 1;
      const good = higher ? score : 1 - score;
      g.strokeStyle = t.outcome === "done" ? "rgba(31,119,180," + (0.15 + 0.75 * good) + ")" : "rgba(150,150,150,0.25)";
      g.lineWidth = t.id === highlight ? 3 * devicePixelRatio : devicePixelRatio;
      g.beginPath();
      lines[n].pts.filter(Boolean).forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
      g.stroke();
    });
    g.fillStyle = "#1d232a";
    g.font = 11 * devicePixelRatio + "px sans-serif";
    axes.forEach((a, i) => {
      g.fillRect(xAt(i), pad, devicePixelRatio, h - 2 * pad);
      g.fillText(a.name + (a.log ? " (log)" : ""), xAt(i) - 12 * devicePixelRatio, pad - 10 * devicePixelRatio);
    });
  };
  const nearest = (event) => {
    const r = canvas.getBoundingClientRect();
    const x = (event.clientX - r.left) * devicePixelRatio, y = (event.clientY - r.top) * devicePixelRatio;
    let best = null, dist = 12 * devicePixelRatio;
    for (const line of lines) {
      for (const p of line.pts) {
        if (p && Math.abs(p[0] - x) < 20 * devicePixelRatio && Math.abs(p[1] - y) < dist) { dist = Math.abs(p[1] - y); best = line.id; }
      }
    }
    return best;
  };
  canvas.addEventListener("mousemove", (e) => {
    const id = nearest(e);
    if (id === null) return;
    const t = byId.get(id);
    hover.textContent = "trial #" + id + ": " + axes.map((a) => a.name + " " + fmt(a.name === metric ? t.y : t.at[a.name])).join(", ");
    draw(id);
  });
  canvas.addEventListener("click", (e) => { const id = nearest(e); if (id !== null) location.href = trialHref(id); });
  requestAnimationFrame(() => draw(null));
  return box;
}

// Curves of the epochs given (RecordedEpoch rows) for the trials given, on `field`.
function curveSeries(trials, epochs, field) {
  const maxEpoch = Math.max(1, ...epochs.map((e) => e.epoch), ...trials.map((t) => t.epochs || 0));
  const xs = Array.from({ length: maxEpoch }, (_, i) => i + 1);
  const series = trials.map((t, i) => {
    const values = xs.map(() => null);
    for (const e of epochs) if (e.trial === t.id && e[field] !== null) values[e.epoch - 1] = e[field];
    return { label: t.label + (t.status === "running" ? " (running)" : ""), id: t.id, values, color: PALETTE[i % PALETTE.length] };
  });
  return [xs, series];
}

// ---------------------------------------------------------------- a sweep
async function sweepView(name) {
  crumbs(el("a", { href: "/" }, "sweeps"), el("span", {}, name));
  const url = new URL(location.href);
  const state = {
    page: Number(url.searchParams.get("page") || 1),
    sort: url.searchParams.get("sort") || "",
    where: url.searchParams.get("where") || "",
    group: url.searchParams.get("group") === "config",
  };
  const summary = el("div", { class: "cards", id: "summary" });
  const filterInput = el("input", { type: "text", id: "filter", value: state.where, placeholder: "filter, as sweep ls --where: arch = cnn and val_acc > 0.8", "aria-label": "filter" });
  const groupBox = el("input", { type: "checkbox", id: "group" });
  groupBox.checked = state.group;
  const filterError = el("pre", { class: "error", id: "filter-error", hidden: true });
  const pager = el("div", { class: "pager" });
  const table = el("div", { class: "table-wrap", id: "trials" });
  const curvesBox = el("div", { class: "charts", id: "curves" });
  const analysisBox = el("div", { id: "analysis" });
  main.replaceChildren(el("h1", {}, name), summary,
    el("h2", {}, "Learning curves"), el("p", { class: "muted" }, "The best finished trials and every running trial; a running trial's curve grows as it trains."),
    curvesBox,
    el("h2", {}, "Trials"),
    el("form", { class: "filter", onsubmit: (e) => { e.preventDefault(); state.where = filterInput.value; state.page = 1; refreshTable(); } },
      filterInput, el("button", { type: "submit" }, "Filter"),
      el("label", {}, groupBox, " group repeats (mean ± std)")),
    filterError, pager, table, analysisBox);
  groupBox.addEventListener("change", () => { state.group = groupBox.checked; state.page = 1; refreshTable(); });

  let info = null;
  const drawSummary = async () => {
    info = await api("/api/sweeps/" + encodeURIComponent(name));
    const cards = [["trials", info.trials], ["sampler", info.sampler], ["early stopping", info.pruner],
      ["best " + info.metric, fmt(info.best)], ["started", info.started_at || info.created_at],
      ["last activity", info.last_activity || "–"],
      ["progress", info.settled + " / " + info.planned]];
    for (const [status, n] of Object.entries(info.counts)) cards.push([status, n]);
    summary.replaceChildren(...cards.map(([k, v]) => el("div", { class: "card", "data-card": k }, el("span", { class: "muted" }, k), el("b", {}, v))));
  };

  const syncUrl = () => {
    const u = new URL(location.href);
    for (const [k, v] of [["page", state.page > 1 ? state.page : ""], ["sort", state.sort], ["where", state.where], ["group", state.group ? "config" : ""]]) {
      if (v) u.searchParams.set(k, v); else u.searchParams.delete(k);
    }
    history.replaceState(null, "", u);
  };

  const refreshTable = async () => {
    syncUrl();
    const q = new URLSearchParams({ page: state.page, per_page: 50 });
    if (state.sort) q.set("sort", state.sort);
    if (state.where) q.set("where", state.where);
    if (state.group) q.set("group", "config");
    let data;
    try {
      data = await api("/api/sweeps/" + encodeURIComponent(name) + "/trials?" + q);
    } catch (e) {
      if (e.status === 400) { filterError.hidden = false; filterError.textContent = e.message; }
      throw e;
    }
    filterError.hidden = true;
    filterError.textContent = "";
    const pages = Math.max(1, Math.ceil(data.total / data.per_page));
    pager.replaceChildren(
      el("button", { disabled: state.page <= 1, onclick: () => { state.page -= 1; refreshTable(); } }, "‹ previous"),
      el("span", { id: "page-info" }, "page " + data.page + " of " + pages + " · " + data.total + (data.grouped ? " configurations" : " trials")),
      el("button", { disabled: state.page >= pages, onclick: () => { state.page += 1; refreshTable(); } }, "next ›"),
      el("a", { href: "#", id: "compare-link", onclick: (e) => {
        e.preventDefault();
        const ids = [...table.querySelectorAll("input.pick:checked")].map((c) => c.value);
        if (ids.length >= 2) location.href = "/compare?ids=" + ids.join(",");
      } }, "compare checked"));
    const first = data.grouped ? data.groups[0] : data.trials[0];
    // The parameters that vary on this page, and always the architecture, optimizer and lr.
    const rowsShown = data.grouped ? data.groups : data.trials;
    const paramKeys = first ? Object.keys(first.display).filter((k) => !["train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc", "test_loss", "test_acc", "duration_s"].includes(k))
      .filter((k) => ["arch", "optimizer", "lr"].includes(k) || rowsShown.some((r) => r.display[k] !== first.display[k])) : [];
    const sortable = (label, field) => el("th", { class: "sortable", "data-field": field, onclick: () => {
      state.sort = state.sort === "-" + field ? field : "-" + field; state.page = 1; refreshTable();
    } }, label + (state.sort === field ? " ▲" : state.sort === "-" + field ? " ▼" : ""));
    if (data.grouped) {
      const figures = ["val_acc", "best_val_acc", "test_acc", "duration_s"];
      table.replaceChildren(el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "trials"), el("th", {}, "done"), paramKeys.filter((k) => k !== "seed").map((k) => el("th", {}, k)), figures.map((f) => el("th", { class: "num" }, f + " (mean ± std)")))),
        el("tbody", {}, data.groups.map((g) => el("tr", {},
          el("td", {}, g.ids.map((id, i) => [i ? " " : "", el("a", { href: trialHref(id) }, "#" + id)])),
          el("td", { class: "num" }, g.done + " / " + g.repeats),
          paramKeys.filter((k) => k !== "seed").map((k) => el("td", {}, g.display[k] ?? "")),
          figures.map((f) => el("td", { class: "num" }, g[f].display || "–")))))));
      return;
    }
    const figures = ["epochs_done", "val_acc", "best_val_acc", "val_loss", "test_acc", "duration_s"];
    table.replaceChildren(el("table", { id: "trials-table" },
      el("thead", {}, el("tr", {}, el("th", {}, ""), sortable("id", "id"), sortable("status", "status"),
        paramKeys.map((k) => sortable(k, k)), figures.map((f) => sortable(f, f)), el("th", {}, "device"))),
      el("tbody", {}, data.trials.map((t) => el("tr", { "data-trial": t.id },
        el("td", {}, el("input", { type: "checkbox", class: "pick", value: t.id, "aria-label": "pick trial " + t.id })),
        el("td", {}, el("a", { href: trialHref(t.id) }, "#" + t.id)), el("td", {}, statusCell(t.status)),
        paramKeys.map((k) => el("td", {}, t.display[k] ?? "")),
        figures.map((f) => el("td", { class: "num" }, t.display[f] ?? fmt(t[f]))),
        el("td", {}, t.device || ""))))));
  };

  // Learning curves: fetched once, then only the epochs recorded since.
  let curveTrials = [], curveEpochs = [], since = null, curveCharts = null;
  const metricFields = [["val_acc", "validation accuracy"], ["val_loss", "validation loss"], ["train_loss", "training loss"]];
  const refreshCurves = async (full) => {
    const q = new URLSearchParams({ top: 5 });
    if (since && !full) q.set("since", since);
    const data = await api("/api/sweeps/" + encodeURIComponent(name) + "/curves?" + q);
    const ids = data.trials.map((t) => t.id).join(",");
    const same = ids === curveTrials.map((t) => t.id).join(",");
    if (!same && since && !full) return refreshCurves(true);
    if (full || !same) curveEpochs = [];
    const seen = new Set(curveEpochs.map((e) => e.trial + ":" + e.epoch));
    for (const e of data.epochs) if (!seen.has(e.trial + ":" + e.epoch)) curveEpochs.push(e);
    curveTrials = data.trials;
    since = data.now || since;
    if (!curveTrials.length) {
      curvesBox.replaceChildren(el("p", { class: "muted" }, "No trial has finished or is running yet."));
      curveCharts = null;
      return;
    }
    if (!curveCharts || !same) {
      curveCharts = metricFields.map(([field, label]) => {
        const [xs, series] = curveSeries(curveTrials, curveEpochs, field);
        return lineChart(label, "epoch", field, xs, series);
      });
      curvesBox.replaceChildren(...curveCharts);
      curvesBox.dataset.points = curveEpochs.length;
    } else {
      metricFields.forEach(([field], i) => {
        const [xs, series] = curveSeries(curveTrials, curveEpochs, field);
        curveCharts[i].update(xs, series);
      });
      curvesBox.dataset.points = curveEpochs.length;
    }
  };

  const refreshAnalysis = async () => {
    const a = await api("/api/sweeps/" + encodeURIComponent(name) + "/analysis");
    const parts = [];
    if (a.front) {
      const f = a.front;
      parts.push(el("h2", {}, "Pareto front"), el("p", { class: "muted" }, f.front.length + " of " + f.trials.length +
        " finished trials are on the front of " + f.objectives.map((o, i) => o + (f.maximised[i] ? " (max)" : " (min)")).join(", ") +
        ": no other finished trial is at least as good on every objective and better on one."));
      const charts = el("div", { class: "charts" });
      for (let i = 0; i < f.objectives.length; i++) {
        for (let j = i + 1; j < f.objectives.length; j++) {
          charts.append(frontChart(f.objectives[j] + " against " + f.objectives[i], f.objectives[i], f.objectives[j],
            f.trials.map((t) => [t.values[i], t.values[j], t.on_front, t.id])));
        }
      }
      const hv = f.hypervolume_by_trial;
      charts.append(lineChart("Hypervolume against trials finished", "trial", "hypervolume", hv.map((p) => p[0]),
        [{ label: "hypervolume", values: hv.map((p) => p[1]), color: PALETTE[1], width: 2 }]));
      const byId = new Map(f.trials.map((t) => [t.id, t]));
      parts.push(charts, el("table", { id: "front" },
        el("thead", {}, el("tr", {}, ["trial"].concat(f.objectives).map((h) => el("th", {}, h)))),
        el("tbody", {}, f.front.map((id) => el("tr", {}, el("td", {}, el("a", { href: trialHref(id) }, "#" + id)),
          ...byId.get(id).values.map((v) => el("td", { class: "num" }, fmt(v))))))));
    }
    if (a.search) {
      const s = a.search;
      const higher = a.higher_is_better;
      parts.push(el("h2", {}, "Search"), el("p", { class: "muted" }, s.method + ". " + s.results + " of " + s.trials + " trials have a result" +
        (s.intermediate_total > s.intermediate.length ? "; the intermediate values show " + s.intermediate.length + " of " + s.intermediate_total + " trials (the best and an even sample)" : "") + "."));
      const charts = el("div", { class: "charts" });
      const line = (sorted) => { let best = null; return sorted.map((p) => { if (p[2] === "done" && (best === null || (higher ? p[1] > best : p[1] < best))) best = p[1]; return best; }); };
      charts.append(scatterChart("Optimisation history", "trial", s.metric, s.history.map((p) => [p.number, p.value, p.outcome, p.id]), { line }));
      const maxLen = Math.max(1, ...s.intermediate.map((c) => c.values.length));
      const xs = Array.from({ length: maxLen }, (_, i) => i + 1);
      charts.append(lineChart("Intermediate values (grey: pruned or paused)", "epoch", s.metric, xs, s.intermediate.map((c) => ({
        label: "trial #" + c.id + " (" + c.outcome + ")", id: c.id, values: xs.map((_, i) => c.values[i] ?? null),
        color: c.outcome === "done" ? PALETTE[0] : STOPPED, width: 1,
      }))));
      for (const panel of s.panels) charts.append(scatterChart(s.metric + " against " + panel.name + (panel.log ? " (log axis)" : ""), panel.name, s.metric, panel.points, { logX: panel.log }));
      if (s.panels.length >= 1) charts.append(parallelChart(s.params, s.panels, s.metric, higher));
      parts.push(charts, el("h3", {}, "Parameter importance"));
      if (s.importance.rows.length) {
        parts.push(el("p", { class: "muted" }, "First-order variance decomposition over " + s.importance.basis + "."),
          el("table", { id: "importance" }, el("thead", {}, el("tr", {}, ["parameter", "searched as", "ε²", "share"].map((h) => el("th", {}, h)))),
            el("tbody", {}, s.importance.rows.map((r) => el("tr", {}, el("td", {}, r.parameter), el("td", {}, r.searched_as), el("td", { class: "num" }, r.epsilon2.toFixed(3)), el("td", { class: "num" }, r.share === null ? "–" : Math.round(100 * r.share) + "%"))))));
      } else parts.push(el("p", { class: "muted" }, "Too few trials with a result (" + s.importance.trials + ") to say; it takes at least 4."));
    }
    if (a.what_mattered.length) {
      parts.push(el("h2", {}, "What mattered"), el("p", { class: "muted" }, "Per value of each axis (drawn parameters: quantile bins), the best and mean " + a.metric + " of the finished trials."));
      const grid = el("div", { class: "charts" });
      for (const b of a.what_mattered) {
        grid.append(el("div", { class: "chart", "data-axis": b.axis }, el("h3", {}, b.axis + (b.binned ? " (binned)" : "")), el("table", {},
          el("thead", {}, el("tr", {}, [b.axis, "trials", "finished", "best", "mean"].map((h) => el("th", {}, h)))),
          el("tbody", {}, b.groups.map((g) => el("tr", {}, el("td", {}, g.label), el("td", { class: "num" }, g.trials), el("td", { class: "num" }, g.finished), el("td", { class: "num" }, fmt(g.best)), el("td", { class: "num" }, fmt(g.mean))))))));
      }
      parts.push(grid);
    }
    analysisBox.replaceChildren(...parts);
  };

  await drawSummary();
  await Promise.all([refreshTable().catch(() => {}), refreshCurves(true), refreshAnalysis().catch(() => {})]);
  let version = JSON.stringify(await api("/api/sweeps/" + encodeURIComponent(name) + "/version"));
  let analysedAt = Date.now(), analysisDue = false;
  every(1000, async () => {
    const now = JSON.stringify(await api("/api/sweeps/" + encodeURIComponent(name) + "/version"));
    if (now !== version) {
      version = now;
      analysisDue = true;
      await Promise.all([drawSummary(), refreshTable().catch(() => {}), refreshCurves(false)]);
    }
    if (analysisDue && Date.now() - analysedAt > 5000) {
      analysisDue = false;
      analysedAt = Date.now();
      await refreshAnalysis();
    }
  });
}

// ---------------------------------------------------------------- a trial
async function trialView(id) {
  crumbs(el("a", { href: "/" }, "sweeps"), el("span", {}, "trial " + id));
  let charts = null;
  const draw = async () => {
    const t = await api("/api/trials/" + encodeURIComponent(id));
    const tr = t.trial;
    crumbs(el("a", { href: "/" }, "sweeps"), el("a", { href: sweepHref(tr.sweep) }, tr.sweep), el("span", {}, "trial " + tr.id));
    const params = Object.entries(tr).filter(([k]) => !["id", "sweep", "status", "error", "fused_with"].includes(k));
    const parts = [el("h1", {}, t.label), el("div", { class: "cards" },
      el("div", { class: "card" }, el("span", { class: "muted" }, "status"), el("b", { id: "trial-status" }, statusCell(tr.status))),
      el("div", { class: "card" }, el("span", { class: "muted" }, "device"), el("b", {}, tr.device || "–")),
      el("div", { class: "card" }, el("span", { class: "muted" }, "epochs"), el("b", {}, tr.epochs_done)),
      el("div", { class: "card" }, el("span", { class: "muted" }, "test accuracy"), el("b", {}, fmt(tr.test_acc))))];
    if (tr.status === "running") parts.push(el("p", { id: "holder" }, "Held by " + (t.holder.owner || "?") + ", last heartbeat " + (t.holder.heartbeat_at || "?") + (t.holder.heartbeat_age_s !== null ? " (" + Math.round(t.holder.heartbeat_age_s) + " s ago)" : "") + "."));
    if (tr.error) parts.push(el("h2", {}, "Error"), el("pre", { class: "error", id: "trial-error" }, tr.error));
    if (tr.fused_with) parts.push(el("p", {}, "Trained fused with trials ", tr.fused_with.split(",").map((f, i) => [i ? ", " : "", el("a", { href: trialHref(f.trim()) }, "#" + f.trim())]), "."));
    parts.push(el("h2", {}, "Parameters and results"), el("div", { class: "table-wrap" }, el("table", { id: "params" }, el("tbody", {}, params.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, typeof v === "number" ? fmt(v) : v === null ? "–" : String(v))))))));
    const epochsAsRows = t.epochs.map((e) => ({ ...e, trial: tr.id }));
    const me = [{ id: tr.id, label: "#" + tr.id, status: tr.status, epochs: tr.epochs }];
    const curveBox = el("div", { class: "charts" });
    parts.push(el("h2", {}, "Epochs"), curveBox);
    charts = [["val_acc", "validation accuracy"], ["train_acc", "training accuracy"], ["val_loss", "validation loss"], ["train_loss", "training loss"]].map(([f, label]) => {
      const [xs, series] = curveSeries(me, epochsAsRows, f);
      series[0].points = false;
      return lineChart(label, "epoch", f, xs, series, { height: 200 });
    });
    curveBox.append(...charts);
    parts.push(el("div", { class: "table-wrap" }, el("table", { id: "epochs" }, el("thead", {}, el("tr", {}, ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"].map((h) => el("th", { class: "num" }, h)))),
      el("tbody", {}, t.epochs.map((e) => el("tr", {}, [e.epoch, e.train_loss, e.train_acc, e.val_loss, e.val_acc, e.seconds].map((v) => el("td", { class: "num" }, fmt(v)))))))));
    if (t.confusion.length) {
      const max = Math.max(...t.confusion.flat());
      parts.push(el("h2", {}, "Confusion matrix (test set; rows: true class, columns: predicted)"),
        el("div", { class: "table-wrap" }, el("table", { class: "heat", id: "confusion" },
          el("thead", {}, el("tr", {}, el("th", {}, ""), t.classes.map((c) => el("th", {}, c.name)))),
          el("tbody", {}, t.confusion.map((row, a) => el("tr", {}, el("th", {}, t.classes[a].name), row.map((n, p) => {
            const shade = max ? n / max : 0;
            return el("td", { title: t.classes[a].name + " taken for " + t.classes[p].name + ": " + n, style: "background: rgba(" + (a === p ? "31,119,180" : "214,39,40") + "," + (0.08 + 0.85 * shade).toFixed(3) + ");" + (shade > 0.55 ? "color:#fff" : "") }, n);
          })))))),
        el("h2", {}, "Accuracy for each class"),
        el("table", { id: "classes" }, el("tbody", {}, t.classes.map((c) => el("tr", {}, el("th", {}, c.name), el("td", { class: "num" }, fmt(c.accuracy)),
          el("td", {}, el("span", { class: "bar" }, el("span", { style: "width:" + (100 * (c.accuracy || 0)).toFixed(1) + "%" }))))))));
    }
    if (t.lineage) {
      const pairs = (ps) => ps.map(([h, v]) => h + "=" + fmt(v)).join(" ");
      parts.push(el("h2", {}, "Copies (population-based training)"), t.lineage.copies.length
        ? el("div", { class: "table-wrap" }, el("table", { id: "copies" },
          el("thead", {}, el("tr", {}, ["after epoch", "copied trial", "its value", "own value", "before", "after"].map((h) => el("th", {}, h)))),
          el("tbody", {}, t.lineage.copies.map((c) => el("tr", {}, el("td", { class: "num" }, c.epoch), el("td", {}, el("a", { href: trialHref(c.donor) }, "#" + c.donor)),
            el("td", { class: "num" }, fmt(c.donor_value)), el("td", { class: "num" }, fmt(c.value)), el("td", {}, pairs(c.before)), el("td", {}, pairs(c.after)))))))
        : el("p", {}, "None: this member kept its own weights throughout."),
        el("h2", {}, "Ancestry of the final weights and their schedule"),
        el("div", { class: "table-wrap" }, el("table", { id: "ancestry" },
          el("thead", {}, el("tr", {}, ["epochs", "trained by", "hyperparameters"].map((h) => el("th", {}, h)))),
          el("tbody", {}, t.lineage.ancestry.map((a) => el("tr", {}, el("td", {}, a.first_epoch + "–" + a.last_epoch), el("td", {}, el("a", { href: trialHref(a.member) }, "#" + a.member)), el("td", {}, pairs(a.params))))))));
      const last = t.lineage.ancestry.length ? t.lineage.ancestry[t.lineage.ancestry.length - 1].last_epoch : 1;
      const scheduleBox = el("div", { class: "charts", id: "schedule" });
      scheduleBox.append(...t.lineage.schedule.map(([h, values]) => {
        const xs = Array.from({ length: last }, (_, i) => i + 1);
        const at = (e) => values.filter(([from]) => from <= e).pop()[1];
        return lineChart(h + " by epoch", "epoch", h, xs, [{ label: "#" + tr.id, id: tr.id, values: xs.map(at) }], { height: 180 });
      }));
      parts.push(scheduleBox);
    }
    if (t.checkpoints.length) parts.push(el("h2", {}, "Checkpoints"), el("div", { class: "table-wrap" }, el("table", { id: "checkpoints" },
      el("thead", {}, el("tr", {}, ["kind", "epoch", "size", "sha256", "path"].map((h) => el("th", {}, h)))),
      el("tbody", {}, t.checkpoints.map((c) => el("tr", {}, el("td", {}, c.kind), el("td", { class: "num" }, c.epoch), el("td", { class: "num" }, (c.size_bytes / 1024).toFixed(1) + " KiB"), el("td", {}, el("code", {}, c.sha256)), el("td", {}, c.path)))))));
    parts.push(el("h2", {}, "Reproduce"), ...t.commands.map((c) => el("code", { class: "cmd" }, c)));
    main.replaceChildren(...parts);
    return tr.status;
  };
  const status = await draw();
  if (status === "running" || status === "pending") every(2000, async () => { const s = await draw(); if (s !== "running" && s !== "pending") timers.forEach(clearInterval); });
}

// ---------------------------------------------------------------- compare
async function compareView() {
  const ids = new URL(location.href).searchParams.get("ids") || "";
  crumbs(el("a", { href: "/" }, "sweeps"), el("span", {}, "compare " + ids));
  const data = await api("/api/compare?ids=" + encodeURIComponent(ids));
  const cols = data.trials.map((t) => "trial " + t.id);
  const curveBox = el("div", { class: "charts" });
  for (const [f, label] of [["val_acc", "validation accuracy"], ["val_loss", "validation loss"], ["train_loss", "training loss"]]) {
    const [xs, series] = curveSeries(data.trials, data.epochs, f);
    curveBox.append(lineChart(label, "epoch", f, xs, series));
  }
  main.replaceChildren(el("h1", {}, "Compare " + data.trials.length + " trials"),
    el("ul", {}, data.trials.map((t, i) => el("li", { style: "color:" + PALETTE[i % PALETTE.length] }, el("a", { href: trialHref(t.id) }, t.label), " ", statusCell(t.status)))),
    curveBox,
    el("h2", {}, "Fields (* marks the ones that differ)"),
    el("div", { class: "table-wrap" }, el("table", { id: "compare" },
      el("thead", {}, el("tr", {}, el("th", {}, "field"), cols.map((c) => el("th", {}, c)))),
      el("tbody", {}, data.fields.map((row) => el("tr", { class: row.differs ? "differs" : "" }, el("td", {}, row.field), cols.map((c) => el("td", {}, row[c] === null ? "–" : typeof row[c] === "number" ? fmt(row[c]) : String(row[c])))))))));
}

// ---------------------------------------------------------------- routing
async function route() {
  const path = location.pathname;
  try {
    if (path === "/") return await sweepsView();
    let m = path.match(/^\/sweeps\/(.+)$/);
    if (m) return await sweepView(decodeURIComponent(m[1]));
    m = path.match(/^\/trials\/(.+)$/);
    if (m) return await trialView(decodeURIComponent(m[1]));
    if (path === "/compare") return await compareView();
    errorPage(new ApiError(404, "no such page"));
  } catch (e) {
    errorPage(e);
    // The database may come back: try the whole view again.
    if (e.status === 503 || e.status === 0) setTimeout(route, 2000);
  }
}
route();
