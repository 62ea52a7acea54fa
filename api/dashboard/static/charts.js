/* Tiny inline-SVG charts for the genqueue dashboard: stacked bars, lines, a phase timeline. No deps.
 * Why home-made: the dashboard needs three chart shapes; this file is ~8 KB unminified, served from the
 * API's own origin under a `script-src 'self'` policy with no build step. The smallest well-kept
 * library that draws them (uPlot) is ~50 KB minified and would still need the timeline written here. */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";

  function el(tag, attrs, text) {
    var node = document.createElementNS(NS, tag);
    for (var k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function fmtTick(v) {
    if (v === 0) return "0";
    if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 1) + "k";
    if (v < 0.01) return v.toExponential(0);
    if (v < 1) return String(Math.round(v * 100) / 100);
    return String(Math.round(v * 10) / 10);
  }

  function timeLabel(iso, step) {
    var d = new Date(iso);
    var hh = String(d.getHours()).padStart(2, "0"), mm = String(d.getMinutes()).padStart(2, "0");
    if (step >= 86400) return (d.getMonth() + 1) + "/" + d.getDate();
    if (step >= 3600) return (d.getMonth() + 1) + "/" + d.getDate() + " " + hh + "h";
    return hh + ":" + mm;
  }

  function frame(container, height) {
    container.textContent = "";
    var width = Math.max(container.clientWidth || 0, 320);
    var svg = el("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img"});
    container.appendChild(svg);
    return {svg: svg, w: width, h: height, l: 40, r: 8, t: 8, b: 22};
  }

  function axes(f, ymax, series, step) {
    var ih = f.h - f.t - f.b;
    for (var i = 0; i <= 4; i++) {
      var y = f.t + ih - (ih * i) / 4;
      f.svg.appendChild(el("line", {x1: f.l, x2: f.w - f.r, y1: y, y2: y, "class": "grid"}));
      f.svg.appendChild(el("text", {x: f.l - 6, y: y + 3, "text-anchor": "end", "class": "tick"}, fmtTick((ymax * i) / 4)));
    }
    var n = series.length, iw = f.w - f.l - f.r;
    var every = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(iw / 70))));
    for (var j = 0; j < n; j += every) {
      var x = f.l + (iw * (j + 0.5)) / n;
      f.svg.appendChild(el("text", {x: x, y: f.h - 6, "text-anchor": "middle", "class": "tick"}, timeLabel(series[j].t, step)));
    }
  }

  function empty(f, msg) {
    f.svg.appendChild(el("text", {x: f.w / 2, y: f.h / 2, "text-anchor": "middle", "class": "empty"}, msg));
  }

  /* series: [{t, a: n, b: n}], keys: [{key, color, label}] */
  function stackedBars(container, series, keys, step) {
    var f = frame(container, 190);
    var max = 0;
    series.forEach(function (p) {
      var s = 0; keys.forEach(function (k) { s += p[k.key] || 0; }); max = Math.max(max, s);
    });
    var ymax = niceMax(max);
    axes(f, ymax, series, step);
    if (max === 0) { empty(f, "no finished jobs in this window"); return; }
    var iw = f.w - f.l - f.r, ih = f.h - f.t - f.b, bw = iw / series.length;
    series.forEach(function (p, i) {
      var y = f.t + ih, g = el("g", {"class": "bar"});
      var tip = timeLabel(p.t, step);
      keys.forEach(function (k) {
        var v = p[k.key] || 0;
        if (!v) return;
        var hgt = (ih * v) / ymax;
        y -= hgt;
        g.appendChild(el("rect", {x: f.l + i * bw + Math.min(1, bw * 0.1), y: y, width: Math.max(1, bw - Math.min(2, bw * 0.2)),
          height: hgt, fill: k.color}));
        tip += "  " + k.label + " " + v;
      });
      g.appendChild(el("title", {}, tip));
      f.svg.appendChild(g);
    });
  }

  /* series: [{t, a: v|null, ...}], keys as above; gaps where a value is null. Log scale when the
     phases differ by more than 50x (queue time in ms next to end-to-end in minutes). */
  function lines(container, series, keys, step) {
    var f = frame(container, 190);
    var max = 0, min = Infinity;
    series.forEach(function (p) {
      keys.forEach(function (k) { var v = p[k.key]; if (v != null) { max = Math.max(max, v); if (v > 0) min = Math.min(min, v); } });
    });
    var ih = f.h - f.t - f.b, iw = f.w - f.l - f.r, n = series.length;
    var log = max > 0 && min < Infinity && max / min > 50;
    var lo = log ? Math.floor(Math.log10(min)) : 0, hi = log ? Math.ceil(Math.log10(max)) : 0;
    if (log && hi === lo) hi = lo + 1;
    var ymax = niceMax(max);
    var yOf = log
      ? function (v) { return f.t + ih - (ih * (Math.log10(Math.max(v, Math.pow(10, lo))) - lo)) / (hi - lo); }
      : function (v) { return f.t + ih - (ih * v) / ymax; };
    if (log) {
      for (var e = lo; e <= hi; e++) {
        var y = yOf(Math.pow(10, e));
        f.svg.appendChild(el("line", {x1: f.l, x2: f.w - f.r, y1: y, y2: y, "class": "grid"}));
        f.svg.appendChild(el("text", {x: f.l - 6, y: y + 3, "text-anchor": "end", "class": "tick"}, fmtTick(Math.pow(10, e))));
      }
      var every = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(iw / 70))));
      for (var j = 0; j < n; j += every) {
        f.svg.appendChild(el("text", {x: f.l + (iw * (j + 0.5)) / n, y: f.h - 6, "text-anchor": "middle", "class": "tick"},
          timeLabel(series[j].t, step)));
      }
      f.svg.appendChild(el("text", {x: f.w - f.r, y: f.t + 8, "text-anchor": "end", "class": "tick"}, "log scale"));
    } else {
      axes(f, ymax, series, step);
    }
    if (max === 0) { empty(f, "no timings in this window"); return; }
    keys.forEach(function (k) {
      var d = "", pen = false;
      series.forEach(function (p, i) {
        var v = p[k.key];
        if (v == null) { pen = false; return; }
        var x = f.l + (iw * (i + 0.5)) / n, y = yOf(v);
        d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1) + " ";
        pen = true;
        var dot = el("circle", {cx: x, cy: y, r: 2.2, fill: k.color});
        dot.appendChild(el("title", {}, k.label + " p50 " + v.toFixed(3) + " s @ " + timeLabel(p.t, step)));
        f.svg.appendChild(dot);
      });
      if (d) f.svg.appendChild(el("path", {d: d, fill: "none", stroke: k.color, "stroke-width": 1.6, "class": "line"}));
    });
  }

  /* phases: [{label, start: ms, end: ms, color}] */
  function timeline(container, phases) {
    container.textContent = "";
    if (!phases.length) return;
    var rowH = 20, width = Math.max(container.clientWidth || 0, 300), left = 92, right = 64;
    var height = phases.length * rowH + 18;
    var svg = el("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img"});
    var t0 = Math.min.apply(null, phases.map(function (p) { return p.start; }));
    var t1 = Math.max.apply(null, phases.map(function (p) { return p.end; }));
    var span = Math.max(t1 - t0, 1), iw = width - left - right;
    phases.forEach(function (p, i) {
      var y = i * rowH + 4;
      var x = left + (iw * (p.start - t0)) / span, w = Math.max(2, (iw * (p.end - p.start)) / span);
      svg.appendChild(el("text", {x: left - 6, y: y + 12, "text-anchor": "end", "class": "tick"}, p.label));
      var r = el("rect", {x: x, y: y + 2, width: w, height: rowH - 6, rx: 2, fill: p.color});
      r.appendChild(el("title", {}, p.label + " " + ((p.end - p.start) / 1000).toFixed(3) + " s"));
      svg.appendChild(r);
      svg.appendChild(el("text", {x: Math.min(x + w + 4, width - right + 4), y: y + 12, "class": "tick"},
        ((p.end - p.start) / 1000).toFixed(2) + " s"));
    });
    svg.appendChild(el("text", {x: left, y: height - 2, "class": "tick"}, "0 s"));
    svg.appendChild(el("text", {x: width - right, y: height - 2, "text-anchor": "end", "class": "tick"},
      (span / 1000).toFixed(2) + " s"));
    container.appendChild(svg);
  }

  window.GQCharts = {stackedBars: stackedBars, lines: lines, timeline: timeline};
})();
