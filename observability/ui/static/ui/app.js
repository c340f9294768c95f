// The UI's behaviour: navigation controls, and the uPlot charts of a page. Each element
// [data-chart] names its kind, the JSON script holding its columns (data-data) and,
// when that holds several charts' columns, its key (data-key). Charts in fragments are
// drawn when htmx has swapped them in. Drag across a time chart to zoom: the page
// reloads over that range (the state stays in the URL). window.apmCharts records what
// each chart drew.
(function () {
  "use strict";

  const ACCENT = "#2459d6";
  // Stroke and (opaque: stacked layers must not blend) fill of each status class.
  const CLASS_COLOURS = {
    "1xx": ["#9aa5b1", "#dde1e6"], "2xx": ["#6f97e8", "#c9d8f7"], "3xx": ["#9a86dc", "#ddd5f5"],
    "4xx": ["#d98f1c", "#f5d9a8"], "5xx": ["#c4321f", "#eeb3aa"],
  };
  const AXIS = { stroke: "#68707c", grid: { stroke: "#eef0f3", width: 1 }, ticks: { stroke: "#e2e5ea", width: 1 }, font: "11px Inter, system-ui, sans-serif" };
  const INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7];
  window.apmCharts = window.apmCharts || {};

  function fmtMs(v) {
    if (v == null) return "–";
    if (v === 0) return "0";
    return v >= 10000 ? (v / 1000).toFixed(1) + " s" : v >= 100 ? v.toFixed(0) + " ms" : v >= 1 ? v.toFixed(1) + " ms" : v.toPrecision(2) + " ms";
  }
  function fmtNum(v, digits) { return v == null ? "–" : (+v).toLocaleString("en-US", { maximumFractionDigits: digits }); }
  // Axis values: as few digits as tell the ticks apart.
  function fmtTick(v) {
    if (v == null) return "";
    const a = Math.abs(v);
    return a >= 100 ? fmtNum(v, 0) : a >= 1 ? fmtNum(v, 2) : a === 0 ? "0" : (+v.toPrecision(2)).toString();
  }
  // Log axes: label the powers of ten only.
  function fmtLogMs(v) { return v != null && Math.abs(Math.log10(v) % 1) < 1e-9 ? fmtMs(v) : ""; }

  function line(label, colour, value, width) {
    return { label: label, stroke: colour, width: width || 1.5, value: value, spanGaps: false, points: { show: false } };
  }

  // Stacked areas: uPlot draws what it is given, so each series is the running sum of
  // the classes below it; the legend shows each class's own value.
  function stacked(columns) {
    const names = columns.classes;
    const sums = [], series = [{}];
    let running = columns.x.map(function () { return 0; });
    names.forEach(function (name) {
      const own = columns[name];
      running = running.map(function (v, i) { return v + (own[i] || 0); });
      sums.push(running);
      const colours = CLASS_COLOURS[name] || [ACCENT, "#c9d8f7"];
      series.push({
        label: name, stroke: colours[0], fill: colours[1], width: 1,
        points: { show: false },
        value: function (u, v, si, i) { return i == null ? "–" : fmtNum(own[i], 3); },
      });
    });
    // Drawn last first, so lower layers stay visible on top of the wider ones.
    return { data: [columns.x].concat(sums.slice().reverse()), series: [series[0]].concat(series.slice(1).reverse()) };
  }

  const KINDS = {
    traffic: function (c) { return Object.assign(stacked(c), { axes: [{}, { values: function (u, vals) { return vals.map(fmtTick); } }] }); },
    errors: function (c) {
      return { data: [c.x, c.error_rate], series: [{}, Object.assign(line("error rate %", "#c4321f", function (u, v) { return v == null ? "–" : v.toFixed(2) + "%"; }), { fill: "#c4321f18" })], scales: { y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } } };
    },
    latency: function (c) {
      return {
        data: [c.x, c.p50, c.p95, c.p99],
        series: [{}, line("p50", "#8fb0ee", function (u, v) { return fmtMs(v); }), line("p95", ACCENT, function (u, v) { return fmtMs(v); }, 2), line("p99", "#13306f", function (u, v) { return fmtMs(v); })],
        axes: [{}, { values: function (u, vals) { return vals.map(fmtMs); }, size: 60 }],
      };
    },
    apdex: function (c) {
      return { data: [c.x, c.apdex], series: [{}, Object.assign(line("Apdex", ACCENT, function (u, v) { return v == null ? "–" : v.toFixed(3); }, 2), { fill: ACCENT + "14" })], scales: { y: { range: [0, 1] } } };
    },
    distribution: function (c) {
      return {
        data: [c.x, c.count],
        series: [{ label: "≤ latency", value: function (u, v) { return fmtMs(v); } },
          { label: "requests", stroke: ACCENT, fill: ACCENT + "33", width: 1, points: { show: false }, paths: uPlot.paths.stepped({ align: 1 }), value: function (u, v) { return fmtNum(v, 0); } }],
        scales: { x: { time: false, distr: 3 } },
        axes: [{ values: function (u, vals) { return vals.map(fmtLogMs); } }, { values: function (u, vals) { return vals.map(fmtTick); }, size: 60 }],
        cursor: { drag: { x: false, y: false } },
        zoomable: false,
      };
    },
    occurrences: function (c) {
      return {
        data: [c.x, c.count],
        series: [{}, { label: "occurrences", stroke: "#c4321f", fill: "#c4321fcc", width: 0, points: { show: false },
          paths: uPlot.paths.bars({ size: [0.9, 24], align: 1 }), value: function (u, v) { return fmtNum(v, 0); } }],
        scales: { y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } },
        // Counts: whole-number ticks only.
        axes: [{}, { incrs: INTEGER_STEPS, values: function (u, vals) { return vals.map(fmtTick); } }],
      };
    },
    spark: function (c) {
      return {
        data: [c.x, c.rps], series: [{}, { stroke: ACCENT, fill: ACCENT + "22", width: 1, points: { show: false } }],
        axes: [{ show: false }, { show: false }], legend: { show: false }, cursor: { show: false },
        padding: [2, 0, 2, 0], zoomable: false, height: 28,
      };
    },
  };

  function zoomTo(u) {
    const sel = u.select;
    if (sel.width < 5) return;
    const from = u.posToVal(sel.left, "x"), to = u.posToVal(sel.left + sel.width, "x");
    const params = new URLSearchParams(location.search);
    ["range", "from", "to", "interval", "cursor"].forEach(function (k) { params.delete(k); });
    params.set("range", "custom");
    params.set("from", new Date(from * 1000).toISOString().replace(/\.\d+Z$/, "Z"));
    params.set("to", new Date(to * 1000).toISOString().replace(/\.\d+Z$/, "Z"));
    location.search = params.toString();
  }

  function draw(el, sources) {
    if (el.dataset.drawn) return;
    const kind = KINDS[el.dataset.chart];
    const script = document.getElementById(el.dataset.data);
    if (!kind || !script) return;
    if (!sources[script.id]) sources[script.id] = JSON.parse(script.textContent);
    const columns = el.dataset.key ? sources[script.id][el.dataset.key] : sources[script.id];
    if (!columns) return;
    el.dataset.drawn = "1";
    if (!columns.x.length) { el.innerHTML = '<p class="chart-empty">No data in this range.</p>'; return; }
    const spec = kind(columns);
    const began = performance.now();
    const opts = {
      width: el.clientWidth || 400,
      height: spec.height || 200,
      series: spec.series,
      scales: Object.assign({ x: { time: true } }, spec.scales || {}),
      axes: (spec.axes || [{}, {}]).map(function (a) { return Object.assign({}, AXIS, a); }),
      legend: spec.legend || { live: true },
      cursor: spec.cursor || { drag: { x: true, y: false, setScale: false } },
      padding: spec.padding,
      hooks: {
        draw: [function (u) {
          window.apmCharts[el.dataset.chart + (el.dataset.chart === "spark" ? ":" + el.dataset.key : "")] = {
            points: u.data[0].length, series: u.series.length - 1, drawMs: performance.now() - began,
          };
          el.dataset.rendered = "1";
        }],
        setSelect: spec.zoomable === false ? [] : [zoomTo],
      },
    };
    const chart = new uPlot(opts, spec.data, el);
    new ResizeObserver(function () {
      if (el.clientWidth && Math.abs(el.clientWidth - chart.width) > 2) chart.setSize({ width: el.clientWidth, height: opts.height });
    }).observe(el);
  }

  function drawAll(root) {
    if (typeof uPlot === "undefined") return;
    const sources = {};
    root.querySelectorAll("[data-chart]").forEach(function (el) { draw(el, sources); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawAll(document);
    document.querySelectorAll("select[data-navigate]").forEach(function (select) {
      select.addEventListener("change", function () { location.href = select.value; });
    });
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.requestSubmit(); });
    });
  });
  document.addEventListener("submit", function (event) {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const text = document.querySelector(button.dataset.copy).textContent;
    navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
  });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
})();
