// thinkmeter's built-in view: draws the panels that thinkmeter/ui/view.py picks from the Grafana dashboards.
// Live (served at /ui/): the data of each panel comes from api/panel with the page's range and filters.
// File (`thinkmeter report --html`): the data is in the page's config.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("thinkmeter-config").textContent);
  const live = config.mode === "live";
  const ALL = "$__all";
  const COLORS = ["#3b82f6", "#f97316", "#10b981", "#ef4444", "#8b5cf6", "#eab308", "#06b6d4", "#ec4899", "#84cc16", "#64748b"];

  // ------------------------------------------------------------------------------------------ formatting

  function compact(value) {
    const abs = Math.abs(value);
    for (const [size, suffix] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
      if (abs >= size) return (value / size).toPrecision(3).replace(/\.?0+$/, "") + suffix;
    }
    return Number.isInteger(value) ? String(value) : value.toPrecision(3).replace(/\.?0+$/, "");
  }

  function format(value, unit) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return value === "" ? "(none)" : String(value);
    switch (unit) {
      case "currencyUSD":
        return "$" + (Math.abs(value) >= 100 ? value.toFixed(0) : Math.abs(value) >= 1 ? value.toFixed(2) : value.toPrecision(3));
      case "percentunit":
        return (value * 100).toFixed(1) + "%";
      case "s":
        return Math.abs(value) < 1 ? (value * 1000).toPrecision(3) + " ms" : value.toPrecision(3) + " s";
      case "bytes": {
        let v = value, i = 0;
        const units = ["B", "KiB", "MiB", "GiB", "TiB"];
        while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
        return v.toPrecision(3) + " " + units[i];
      }
      case "watt":
        return value.toPrecision(3) + " W";
      default:
        return compact(value);
    }
  }

  function axis(unit) {
    switch (unit) {
      case "currencyUSD": return { tickprefix: "$", tickformat: "~s" };
      case "percentunit": return { tickformat: ".0%" };
      case "s": return { ticksuffix: " s", tickformat: "~s" };
      case "bytes": return { ticksuffix: "B", tickformat: "~s" };
      case "watt": return { ticksuffix: " W", tickformat: "~s" };
      default: return { tickformat: "~s" };
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  // --------------------------------------------------------------------------------------------- state

  function state() {
    const params = new URLSearchParams(location.search);
    const chosen = { range: params.get("range") || config.default_range, from: params.get("from"), to: params.get("to") };
    for (const f of config.filters) chosen[f.name] = params.getAll(f.name).filter((v) => v && v !== ALL);
    return chosen;
  }

  function query(chosen, extra) {
    const params = new URLSearchParams(extra || {});
    params.set("range", chosen.range);
    if (chosen.from && chosen.to) { params.set("from", chosen.from); params.set("to", chosen.to); }
    for (const f of config.filters) for (const v of chosen[f.name]) params.append(f.name, v);
    return params;
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  // -------------------------------------------------------------------------------------------- filters

  function select(name, label, options, chosen, title) {
    const control = el("select", { name: name, id: "filter-" + name });
    for (const [value, text] of options) {
      const option = el("option", { value: value, text: text });
      if (chosen.includes(value)) option.selected = true;
      control.append(option);
    }
    return el("label", { title: title || "" }, label + " ", control);
  }

  function drawFilters(chosen, offered) {
    const form = document.getElementById("filters");
    form.replaceChildren();
    if (!live) return;
    form.append(select("range", "Last", config.ranges.map((r) => [r, r]), [chosen.range]));
    for (const f of config.filters) {
      const values = offered[f.name] || [];
      const current = chosen[f.name].length ? chosen[f.name] : [f.fixed ? f.default : ALL];
      const options = f.fixed ? values.map((v) => [v, v]) : [[ALL, "All"], ...values.map((v) => [v, v])];
      for (const v of current) if (v !== ALL && !values.includes(v)) options.push([v, v]);
      form.append(select(f.name, f.label, options, current, f.description));
    }
    form.onchange = (event) => {
      const params = new URLSearchParams();
      for (const control of form.querySelectorAll("select")) {
        if (control.value !== ALL) params.append(control.name, control.value);
      }
      if (chosen.from && chosen.to && event.target.name !== "range") { params.set("from", chosen.from); params.set("to", chosen.to); }
      history.replaceState(null, "", "?" + params.toString());
      load();
    };
  }

  // --------------------------------------------------------------------------------------------- panels

  function isLabel(panel, column, rows, index) {
    if (column === "time") return false;
    const sample = rows.find((row) => row[index] !== null);
    return sample !== undefined && typeof sample[index] === "string";
  }

  function timeSeries(panel, columns, rows, range) {
    const labels = columns.map((c, i) => isLabel(panel, c, rows, i));
    const valueColumns = columns.map((c, i) => i).filter((i) => columns[i] !== "time" && !labels[i]);
    const traces = new Map();
    for (const row of rows) {
      const key = columns.map((c, i) => (labels[i] ? (row[i] === "" ? "(none)" : row[i]) : null)).filter((v) => v !== null).join(" / ");
      for (const i of valueColumns) {
        const name = valueColumns.length > 1 || !key ? (key ? key + " · " : "") + columns[i] : key;
        if (!traces.has(name)) {
          traces.set(name, { x: [], y: [], name: name, type: "scatter", mode: "lines+markers", marker: { size: 4 } });
          if (panel.stacked) traces.get(name).stackgroup = "one";
        }
        traces.get(name).x.push(row[0]);
        traces.get(name).y.push(row[i]);
      }
    }
    const unit = panel.units[columns[valueColumns[0]]];
    const layout = { yaxis: axis(unit), xaxis: { type: "date", range: range } };
    const rightColumns = valueColumns.filter((i) => panel.units[columns[i]] && panel.units[columns[i]] !== unit);
    if (rightColumns.length) {
      layout.yaxis2 = Object.assign(axis(panel.units[columns[rightColumns[0]]]), { overlaying: "y", side: "right" });
      for (const trace of traces.values()) {
        if (rightColumns.some((i) => trace.name.endsWith(columns[i]))) trace.yaxis = "y2";
      }
    }
    if (panel.thresholds.length) {
      layout.shapes = panel.thresholds.map((value) => ({
        type: "line", xref: "paper", x0: 0, x1: 1, y0: value, y1: value, line: { color: "#ef4444", dash: "dash", width: 1 },
      }));
    }
    return { traces: [...traces.values()], layout: layout };
  }

  function barChart(panel, columns, rows) {
    const category = panel.options.xField || columns[0];
    const ci = columns.indexOf(category);
    const horizontal = (panel.options.orientation || "horizontal") === "horizontal";
    const traces = columns.map((c, i) => i).filter((i) => i !== ci).map((i) => {
      const categories = rows.map((row) => (row[ci] === "" ? "(none)" : String(row[ci])));
      const values = rows.map((row) => row[i]);
      return horizontal
        ? { type: "bar", orientation: "h", y: categories, x: values, name: columns[i] }
        : { type: "bar", x: categories, y: values, name: columns[i] };
    });
    const unit = panel.units[columns.find((c, i) => i !== ci)];
    const layout = { barmode: "group" };
    layout[horizontal ? "xaxis" : "yaxis"] = axis(unit);
    if (horizontal) layout.yaxis = { automargin: true, autorange: "reversed" };
    return { traces: traces, layout: layout };
  }

  function heatmap(panel, columns, rows, range, interval) {
    const [ti, bi, vi] = [0, 1, 2];
    const times = [...new Set(rows.map((row) => row[ti]))].sort();
    // One time bucket has no width on a date axis: give it the next bucket, empty.
    if (times.length === 1) times.push(new Date(Date.parse(times[0].replace(" ", "T") + "Z") + interval).toISOString().slice(0, 19).replace("T", " "));
    const buckets = [...new Set(rows.map((row) => row[bi]))].sort((a, b) => Number(a) - Number(b));
    const z = buckets.map(() => times.map(() => 0));
    for (const row of rows) z[buckets.indexOf(row[bi])][times.indexOf(row[ti])] += row[vi];
    return {
      traces: [{ type: "heatmap", x: times, y: buckets.map((b) => "≤ " + compact(Number(b))), z: z, colorscale: "Oranges",
                 reversescale: false, hovertemplate: "%{x}<br>reasoning %{y}: %{z} calls<extra></extra>" }],
      layout: { xaxis: { type: "date", range: range }, yaxis: { type: "category", automargin: true } },
    };
  }

  function plot(body, panel, figure) {
    const div = el("div", { class: "chart" });
    body.append(div);
    const layout = Object.assign({
      margin: { l: 56, r: 56, t: 8, b: 36 }, height: 260, showlegend: false,
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", colorway: COLORS,
      font: { family: "system-ui, sans-serif", size: 11, color: "#1f2937" },
    }, figure.layout);
    if (layout.yaxis) layout.yaxis.gridcolor = "#e5e7eb";
    layout.xaxis = Object.assign({ gridcolor: "#e5e7eb", automargin: true }, layout.xaxis);
    if (layout.xaxis.type === "date" && layout.xaxis.range) {
      const days = (Date.parse(layout.xaxis.range[1].replace(" ", "T")) - Date.parse(layout.xaxis.range[0].replace(" ", "T"))) / 864e5;
      layout.xaxis.tickformat = days > 2 ? "%b %d" : days < 0.011 ? "%H:%M:%S" : "%H:%M";
    }
    Plotly.newPlot(div, figure.traces, layout, { displayModeBar: false, responsive: true });
    // A legend that wraps with the panel's width (plotly's scrolls once it has many entries).
    if (figure.traces.length > 1 && !figure.traces[0].z) {
      body.append(el("ul", { class: "legend" }, ...figure.traces.map((trace, i) =>
        el("li", {}, el("span", { class: "swatch", style: "background:" + COLORS[i % COLORS.length] }), trace.name))));
    }
    return figure.traces.reduce((n, trace) => n + (trace.z ? trace.z.flat().filter((v) => v > 0).length : (trace.x || trace.y).length), 0);
  }

  function table(body, panel, columns, rows) {
    const head = el("tr", {}, ...columns.map((c) => el("th", { text: c })));
    const linkIndex = panel.link ? columns.indexOf(panel.link) : -1;
    const lines = rows.map((row) => {
      const tr = el("tr", {}, ...row.map((value, i) => el("td", { class: typeof value === "number" ? "num" : "", text: format(value, panel.units[columns[i]]) })));
      if (linkIndex >= 0 && live) {
        tr.classList.add("link");
        tr.dataset.traceId = row[linkIndex];
        tr.title = "show this call";
        tr.onclick = () => showCall(row[linkIndex]);
      }
      return tr;
    });
    body.append(el("div", { class: "table" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...lines))));
    return rows.length;
  }

  function stat(body, panel, columns, rows) {
    const row = rows[0] || [];
    body.append(el("div", { class: "stats" }, ...columns.map((c, i) =>
      el("div", { class: "stat", "data-column": c, "data-value": String(row[i]) }, el("span", { class: "value", text: format(row[i], panel.units[c]) }),
         el("span", { class: "name", text: c.replaceAll("_", " ") })))));
    return rows.length;
  }

  function draw(box, panel, data) {
    const body = box.querySelector(".body");
    body.replaceChildren();
    const rows = data.rows;
    box.dataset.rows = rows.length;
    if (!rows.length) {
      box.dataset.state = "empty";
      box.dataset.points = 0;
      box.hidden = panel.optional;
      body.append(el("p", { class: "empty", text: "No data in this range." }));
      return;
    }
    box.hidden = false;
    let points;
    if (panel.kind === "table") points = table(body, panel, data.columns, rows);
    else if (panel.kind === "stat") points = stat(body, panel, data.columns, rows);
    else if (panel.kind === "barchart") points = plot(body, panel, barChart(panel, data.columns, rows));
    else if (panel.kind === "heatmap") points = plot(body, panel, heatmap(panel, data.columns, rows, data.range, data.interval_ms));
    else points = plot(body, panel, timeSeries(panel, data.columns, rows, data.range));
    box.dataset.points = points;
    box.dataset.state = "ok";
  }

  function layout() {
    const main = document.getElementById("sections");
    main.replaceChildren();
    const boxes = {};
    let section = null;
    for (const panel of config.panels) {
      if (!section || section.dataset.name !== panel.section) {
        section = el("section", { "data-name": panel.section }, el("h2", { text: panel.section }), el("div", { class: "grid" }));
        main.append(section);
      }
      // Stats, heatmaps and tables of many columns take the whole width; other tables two columns.
      const wide = panel.kind === "stat" || panel.kind === "heatmap" || (panel.kind === "table" && panel.columns.length > 7);
      const size = wide ? " wide" : panel.kind === "table" ? " double" : "";
      const box = el("article", { class: "panel" + size, id: "panel-" + panel.id, "data-kind": panel.kind, "data-state": "loading" },
        el("h3", { text: panel.title, title: panel.description || "" }), el("div", { class: "body" }));
      box.hidden = panel.optional;
      section.querySelector(".grid").append(box);
      boxes[panel.id] = box;
    }
    return boxes;
  }

  function updateSections() {
    for (const section of document.querySelectorAll("#sections section")) {
      section.hidden = [...section.querySelectorAll("article.panel")].every((box) => box.hidden);
    }
  }

  // ----------------------------------------------------------------------------------------- one call

  async function showCall(traceId) {
    const aside = document.getElementById("call");
    aside.hidden = false;
    aside.dataset.state = "loading";
    aside.replaceChildren(el("h2", { text: "Call " + traceId }), el("p", { text: "Loading…" }));
    try {
      const { spans } = await getJSON("api/call?" + new URLSearchParams({ trace_id: traceId }));
      const close = el("button", { type: "button", class: "close", text: "Close" });
      close.onclick = () => { aside.hidden = true; };
      aside.replaceChildren(el("h2", { text: "Call " + traceId }), close);
      for (const span of spans) {
        const rows = span.attributes.map(([key, value]) => el("tr", {}, el("th", { text: key }), el("td", { text: value })));
        const resource = span.resource.map(([key, value]) => el("tr", {}, el("th", { text: key }), el("td", { text: value })));
        aside.append(el("section", { class: "span" },
          el("h3", { text: `${span.operation} · ${span.service} · ${span.duration_ms.toFixed(0)} ms · ${span.status}` }),
          el("table", { class: "attributes" }, el("tbody", {}, ...rows)),
          el("details", {}, el("summary", { text: "resource" }), el("table", { class: "attributes" }, el("tbody", {}, ...resource)))));
      }
      aside.dataset.state = spans.length ? "ok" : "empty";
      aside.scrollIntoView({ behavior: "instant", block: "start" });
    } catch (error) {
      aside.dataset.state = "error";
      aside.append(el("p", { class: "error", text: String(error.message || error) }));
    }
  }

  // --------------------------------------------------------------------------------------------- loading

  let generation = 0;

  async function load() {
    const current = ++generation;
    document.body.dataset.state = "loading";
    const chosen = state();
    const boxes = layout();
    document.getElementById("call").hidden = true;
    getJSON("api/options?" + query(chosen)).then((offered) => { if (current === generation) drawFilters(chosen, offered); })
      .catch(() => drawFilters(chosen, {}));
    drawFilters(chosen, {});
    const utc = (ms) => new Date(Number(ms)).toISOString().slice(0, 16).replace("T", " ");
    document.getElementById("subtitle").textContent =
      (chosen.from && chosen.to ? utc(chosen.from) + " to " + utc(chosen.to) : "Last " + chosen.range) + " · times in UTC";
    await Promise.all(config.panels.map(async (panel) => {
      const box = boxes[panel.id];
      try {
        const data = await getJSON("api/panel?" + query(chosen, { id: panel.id }));
        if (current === generation) draw(box, panel, data);
      } catch (error) {
        if (current !== generation) return;
        box.hidden = false;
        box.dataset.state = "error";
        box.querySelector(".body").replaceChildren(el("p", { class: "error", text: String(error.message || error) }));
      }
    }));
    if (current === generation) {
      updateSections();
      document.body.dataset.state = "ready";
    }
  }

  function loadFile() {
    const boxes = layout();
    document.getElementById("subtitle").textContent = config.subtitle || "";
    for (const panel of config.panels) draw(boxes[panel.id], panel, config.data[panel.id]);
    updateSections();
    document.body.dataset.state = "ready";
  }

  if (live) load(); else loadFile();
})();
