// Small SVG charts for the hub, written here so the page needs nothing from elsewhere.
// Every chart is an <svg role="img"> with a <title> and <desc>, and a data table beside it.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f5fbf", "#d9822b", "#2a9d8f", "#b5179e", "#6a994e", "#8d6e63", "#e63946", "#457b9d"];

  function el(name, attrs = {}, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    if (v === 0) return "0";
    const abs = Math.abs(v);
    if (abs >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (abs >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (abs >= 100) return v.toFixed(0);
    if (abs >= 1) return v.toFixed(2);
    return v.toFixed(3);
  }

  function frame(title, description, width, height) {
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${title}. ${description}` });
    svg.appendChild(el("title", {}, title));
    svg.appendChild(el("desc", {}, description));
    return svg;
  }

  function table(columns, rows) {
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "Show the data as a table";
    details.appendChild(summary);
    const t = document.createElement("table");
    const head = t.createTHead().insertRow();
    for (const c of columns) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = c;
      head.appendChild(th);
    }
    const body = t.createTBody();
    for (const r of rows) {
      const tr = body.insertRow();
      for (const v of r) {
        const td = tr.insertCell();
        td.textContent = typeof v === "number" ? fmt(v) : v;
        if (typeof v === "number") td.className = "num";
      }
    }
    details.appendChild(t);
    return details;
  }

  function figure(caption, svg, columns, rows) {
    const fig = document.createElement("figure");
    fig.className = "chart";
    const cap = document.createElement("figcaption");
    cap.textContent = caption;
    fig.append(cap, svg, table(columns, rows));
    return fig;
  }

  function axisY(svg, max, x0, y0, h, w) {
    for (let i = 0; i <= 4; i++) {
      const y = y0 + h - (h * i) / 4;
      svg.appendChild(el("line", { x1: x0, x2: x0 + w, y1: y, y2: y, stroke: "#e3e7ef" }));
      svg.appendChild(el("text", { x: x0 - 6, y: y + 4, "text-anchor": "end" }, fmt((max * i) / 4)));
    }
  }

  // series: [{name, points: [[label, value], ...]}]; one x label per point
  function line(caption, description, labels, series) {
    const W = 560, H = 260, L = 56, B = 40, T = 12, R = 30;
    const w = W - L - R, h = H - T - B;
    const max = Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p[1] || 0)));
    const svg = frame(caption, description, W, H);
    axisY(svg, max, L, T, h, w);
    const step = labels.length > 1 ? w / (labels.length - 1) : 0;
    const every = Math.ceil(labels.length / 8);
    labels.forEach((lab, i) => {
      if (i % every === 0) svg.appendChild(el("text", { x: L + i * step, y: H - B + 16, "text-anchor": "middle" }, lab));
    });
    series.forEach((s, k) => {
      const byLabel = new Map(s.points);
      const pts = labels.map((lab, i) => `${L + i * step},${T + h - (h * (byLabel.get(lab) || 0)) / max}`);
      svg.appendChild(el("polyline", { points: pts.join(" "), fill: "none", stroke: PALETTE[k % PALETTE.length], "stroke-width": 2 }));
      svg.appendChild(el("text", { x: L + 8 + k * 90, y: H - 6, fill: PALETTE[k % PALETTE.length] }, s.name));
    });
    const columns = ["", ...series.map((s) => s.name)];
    const rows = labels.map((lab) => [lab, ...series.map((s) => new Map(s.points).get(lab) ?? null)]);
    return figure(caption, svg, columns, rows);
  }

  // bars: categories on x; several series are stacked (parts of a whole) or, with
  // grouped = true, side by side (values to compare, e.g. two scores)
  function bars(caption, description, categories, series, unit = "", grouped = false) {
    const W = 560, H = 260, L = 56, B = 52, T = 12, R = 12;
    const w = W - L - R, h = H - T - B;
    const totals = categories.map((c) => grouped
      ? Math.max(...series.map((s) => s.values[c] || 0))
      : series.reduce((a, s) => a + (s.values[c] || 0), 0));
    const max = Math.max(1e-9, ...totals);
    const svg = frame(caption, description, W, H);
    axisY(svg, max, L, T, h, w);
    const band = w / categories.length, bw = band * 0.7;
    const each = grouped ? bw / series.length : bw;
    categories.forEach((c, i) => {
      let y = T + h;
      series.forEach((s, k) => {
        const v = s.values[c] || 0;
        const bh = (h * v) / max;
        const x = L + i * band + (band - bw) / 2 + (grouped ? k * each : 0);
        if (grouped) y = T + h - bh; else y -= bh;
        const rect = el("rect", { x, y, width: each, height: bh, fill: PALETTE[k % PALETTE.length] });
        rect.appendChild(el("title", {}, `${c}${s.name ? " · " + s.name : ""}: ${fmt(v)}${unit}`));
        svg.appendChild(rect);
      });
      svg.appendChild(el("text", { x: L + i * band + band / 2, y: H - B + 16, "text-anchor": "middle" }, c));
    });
    if (series.length > 1) {
      series.forEach((s, k) => svg.appendChild(el("text", { x: L + 8 + k * 80, y: H - 8, fill: PALETTE[k % PALETTE.length] }, s.name)));
    }
    const columns = ["", ...series.map((s) => s.name || "value")];
    const rows = categories.map((c) => [c, ...series.map((s) => s.values[c] ?? null)]);
    return figure(caption, svg, columns, rows);
  }

  // heatmap: cells[rowLabel][colLabel] = value, colour by value around a neutral point
  function heatmap(caption, description, rowsLabels, colsLabels, cells, neutral = 1) {
    // room for the longest label (about 7 px a character); column labels are slanted
    const longest = (labels) => Math.max(0, ...labels.map((l) => String(l).length));
    const cell = 52, L = Math.max(80, 7 * longest(rowsLabels) + 12), T = Math.max(56, 5 * longest(colsLabels) + 16);
    // a slanted label reaches about 5 px a character to the right of its column
    const W = L + cell * colsLabels.length + Math.max(10, 5 * longest(colsLabels) - cell / 2);
    const H = T + cell * rowsLabels.length + 10;
    const svg = frame(caption, description, W, H);
    const values = rowsLabels.flatMap((r) => colsLabels.map((c) => cells[r]?.[c])).filter((v) => v != null);
    const hi = Math.max(neutral + 1e-9, ...values), lo = Math.min(neutral - 1e-9, ...values);
    colsLabels.forEach((c, j) => {
      const x = L + j * cell + cell / 2, y = T - 8;
      svg.appendChild(el("text", { x, y, "text-anchor": "start", transform: `rotate(-45 ${x} ${y})` }, c));
    });
    rowsLabels.forEach((r, i) => {
      svg.appendChild(el("text", { x: L - 6, y: T + i * cell + cell / 2 + 4, "text-anchor": "end" }, r));
      colsLabels.forEach((c, j) => {
        const v = cells[r]?.[c];
        let fill = "#f0f0f0";
        if (v != null) {
          const t = v >= neutral ? (v - neutral) / (hi - neutral) : (neutral - v) / (neutral - lo);
          const a = 0.15 + 0.85 * Math.min(1, t);
          fill = v >= neutral ? `rgba(31,95,191,${a})` : `rgba(217,130,43,${a})`;
        }
        const rect = el("rect", { x: L + j * cell, y: T + i * cell, width: cell - 2, height: cell - 2, fill });
        rect.appendChild(el("title", {}, `${r} → ${c}: ${v == null ? "–" : fmt(v)}`));
        svg.appendChild(rect);
        if (v != null) svg.appendChild(el("text", { x: L + j * cell + cell / 2 - 1, y: T + i * cell + cell / 2 + 4, "text-anchor": "middle" }, fmt(v)));
      });
    });
    const rows = rowsLabels.map((r) => [r, ...colsLabels.map((c) => cells[r]?.[c] ?? null)]);
    return figure(caption, svg, ["A \\ B", ...colsLabels], rows);
  }

  return { line, bars, heatmap, fmt };
})();
