// The Data Product Hub: catalogue and product pages over the delivery service's own API.
// Without a key it shows the catalogue and the definitions; with one, the data the caller's
// groups allow (masked as their policy says). The key stays in this tab (sessionStorage).
"use strict";

const state = { products: null, definitions: null, meta: null, key: sessionStorage.getItem("retail_dp_key") };
const main = document.getElementById("main");
const TABS = [
  ["overview", "Overview"],
  ["lineage", "Inputs & outputs"],
  ["model", "Semantic model"],
  ["metrics", "Metrics"],
  ["quality", "Quality"],
  ["access", "Access"],
];
const CATEGORIES = ["completeness", "uniqueness", "freshness", "validity", "schema", "accuracy"];

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

// a table with column headers; a cell is text, a node, or a <td> made by num() or td()
function grid(attrs, headers, rows, rowAttrs = () => ({})) {
  const cell = (c) => (c instanceof HTMLElement && c.tagName === "TD" ? c : h("td", {}, c));
  return h("table", attrs,
    h("thead", {}, h("tr", {}, headers.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((cells, i) => h("tr", rowAttrs(i), cells.map(cell)))));
}
const num = (v) => h("td", { class: "num" }, v);

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  const response = await fetch(path, { ...options, headers });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const error = new Error(body?.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

const load = (query) => api("/v1/load", { method: "POST", body: JSON.stringify(query) });

// -- sign-in ---------------------------------------------------------------------------------

async function refreshCaller() {
  const who = document.getElementById("who");
  const out = document.getElementById("signout");
  state.meta = null;
  if (!state.key) {
    who.textContent = "Not signed in: definitions only, no data.";
    out.hidden = true;
    return;
  }
  try {
    state.meta = await api("/v1/meta");
    who.textContent = `Signed in as ${state.meta.caller.name} (${state.meta.caller.groups.join(", ") || "no group"})`;
    out.hidden = false;
  } catch (error) {
    who.textContent = `Sign-in failed: ${error.message}`;
    state.key = null;
    sessionStorage.removeItem("retail_dp_key");
    out.hidden = true;
  }
}

document.getElementById("signin").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("apikey");
  state.key = input.value.trim() || null;
  input.value = "";
  if (state.key) sessionStorage.setItem("retail_dp_key", state.key);
  await refreshCaller();
  route();
});
document.getElementById("signout").addEventListener("click", async () => {
  state.key = null;
  sessionStorage.removeItem("retail_dp_key");
  await refreshCaller();
  route();
});

// -- catalogue ---------------------------------------------------------------------------------

function sloBadges(slo) {
  return CATEGORIES.filter((c) => slo && slo[c]).map((c) => {
    const s = slo[c];
    const total = s.passed + s.failed + s.warned;
    const cls = s.failed ? "bad" : s.warned ? "warn" : "ok";
    const word = s.failed ? "failing" : s.warned ? "warning" : "met";
    return h("span", { class: `badge ${cls}`, title: `${c}: ${s.passed} of ${total} checks passed` }, `${c} ${word} ${s.passed}/${total}`);
  });
}

function catalogue() {
  const products = state.products;
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const search = h("input", { type: "search", id: "search", placeholder: "Search by name or description", value: params.get("q") || "" });
  const owners = [...new Set(products.map((p) => p.owner.name))].sort();
  const owner = h("select", { id: "owner" }, h("option", { value: "" }, "Any owner"), owners.map((o) => h("option", { value: o }, o)));
  const tagValues = [...new Set(products.flatMap((p) => Object.values(p.tags)))].sort();
  const active = new Set(params.getAll("tag"));
  const chips = tagValues.map((t) => h("button", { type: "button", class: "chip", "aria-pressed": active.has(t) ? "true" : "false", "data-tag": t }, t));
  const list = h("div", { class: "cards", id: "cards", "aria-live": "polite" });

  function render() {
    const q = search.value.trim().toLowerCase();
    const shown = products.filter((p) => {
      const text = `${p.name} ${p.title} ${p.description}`.toLowerCase();
      const tags = Object.values(p.tags);
      return (!q || text.includes(q)) && (!owner.value || p.owner.name === owner.value) && [...active].every((t) => tags.includes(t));
    });
    list.replaceChildren(
      ...shown.map((p) =>
        h("article", { class: "card", "data-product": p.name },
          h("h2", {}, h("a", { href: `#/product/${p.name}` }, p.title)),
          h("p", { class: "muted" }, `${p.kind} · v${p.version} · owner ${p.owner.name}`),
          h("p", {}, p.description),
          h("div", {}, Object.entries(p.tags).map(([k, v]) => h("span", { class: "tag", title: k }, v))),
          h("div", {}, sloBadges(p.status.slo)),
          h("p", { class: "muted" }, p.status.last_refresh ? `Last refresh: ${p.status.last_refresh.published_at} UTC (as of ${p.status.last_refresh.as_of})` : "Not published yet"),
        ),
      ),
    );
    if (!shown.length) list.append(h("p", {}, "No data product matches."));
  }
  search.addEventListener("input", render);
  owner.addEventListener("change", render);
  chips.forEach((chip) =>
    chip.addEventListener("click", () => {
      const t = chip.dataset.tag;
      if (active.has(t)) active.delete(t); else active.add(t);
      chip.setAttribute("aria-pressed", active.has(t) ? "true" : "false");
      render();
    }),
  );
  main.replaceChildren(
    h("h1", {}, "Data products"),
    h("p", { class: "muted" }, "Discover the data products of the code location, what they promise and how to connect."),
    h("div", { class: "toolbar" },
      h("label", {}, "Search", search),
      h("label", {}, "Owner", owner),
      h("div", {}, h("span", { class: "muted", id: "tags-label" }, "Tags"), h("div", { class: "chips", role: "group", "aria-labelledby": "tags-label" }, chips)),
    ),
    list,
  );
  render();
}

// -- product page ------------------------------------------------------------------------------

function productPage(name, tab) {
  const p = state.products.find((x) => x.name === name);
  if (!p) {
    main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, `No data product named ${name}. `, h("a", { href: "#/" }, "Back to the catalogue")));
    return;
  }
  const current = TABS.some(([id]) => id === tab) ? tab : "overview";
  const tablist = h("div", { class: "tabs", role: "tablist", "aria-label": "Product sections" },
    TABS.map(([id, label]) =>
      h("button", {
        type: "button", role: "tab", id: `tab-${id}`, "aria-controls": "panel",
        "aria-selected": id === current ? "true" : "false", tabindex: id === current ? "0" : "-1",
        onclick: () => { location.hash = `#/product/${name}/${id}`; },
      }, label),
    ),
  );
  tablist.addEventListener("keydown", (event) => {
    const ids = TABS.map(([id]) => id);
    let i = ids.indexOf(current);
    if (event.key === "ArrowRight") i = (i + 1) % ids.length;
    else if (event.key === "ArrowLeft") i = (i - 1 + ids.length) % ids.length;
    else if (event.key === "Home") i = 0;
    else if (event.key === "End") i = ids.length - 1;
    else return;
    event.preventDefault();
    location.hash = `#/product/${name}/${ids[i]}`;
  });
  const panel = h("section", { class: "panel", id: "panel", role: "tabpanel", "aria-labelledby": `tab-${current}`, tabindex: "0" });
  main.replaceChildren(
    h("p", {}, h("a", { href: "#/" }, "← All data products")),
    h("h1", {}, p.title),
    h("p", { class: "muted" }, `${p.kind} · ${p.domain} · v${p.version}`),
    tablist,
    panel,
  );
  const renderers = { overview, lineage, model, metrics, quality, access };
  Promise.resolve(renderers[current](p, panel)).catch((error) => panel.append(h("p", { class: "error" }, error.message)));
  if (document.activeElement === document.body || document.activeElement?.getAttribute("role") === "tab") {
    document.getElementById(`tab-${current}`).focus();
  }
}

function overview(p, panel) {
  const refresh = p.status.last_refresh;
  panel.append(
    h("h2", {}, "Purpose"), h("p", {}, p.description),
    h("h2", {}, "Use cases"),
    h("ul", {}, p.use_cases.map((u) => h("li", {}, h("strong", {}, u.name), ": ", u.description))),
    h("h2", {}, "Facts"),
    h("dl", { class: "facts" },
      h("dt", {}, "Owner"), h("dd", {}, `${p.owner.name} <${p.owner.email}>`),
      h("dt", {}, "Collaborators"), h("dd", {}, p.collaborators.map((c) => (c.role ? `${c.name} (${c.role})` : c.name)).join(", ") || "–"),
      h("dt", {}, "Version"), h("dd", {}, p.version),
      h("dt", {}, "Tags"), h("dd", {}, Object.entries(p.tags).map(([k, v]) => h("span", { class: "tag" }, `${k}: ${v}`))),
      h("dt", {}, "Refresh"), h("dd", {}, `${p.refresh.cron} (${p.refresh.timezone})`),
      h("dt", {}, "Last refresh"), h("dd", {}, refresh ? `${refresh.published_at} UTC, as of ${refresh.as_of}, run ${refresh.run_id.slice(0, 8)}` : "not published yet"),
    ),
    h("h2", {}, "Service levels"),
    h("div", { id: "slo-badges" }, sloBadges(p.status.slo)),
    grid({}, ["SLO", "Objective", "Target", "Severity"], Object.entries(p.slos).map(([c, s]) =>
      [c, s.objective, `${s.comparison} ${s.target} ${s.unit}`, `${s.severity}${s.blocking ? ", blocking" : ""}`])),
  );
  if (p.metrics?.length) {
    panel.append(h("h2", {}, "North-star metrics"), h("ul", {}, p.metrics.map((m) => h("li", {}, h("strong", {}, m.label), ": ", m.definition))));
  }
}

function lineage(p, panel) {
  // columns: landing files -> source-aligned products -> this product's outputs
  const byName = Object.fromEntries(state.products.map((x) => [x.name, x]));
  const sources = p.lineage.inputs.filter((i) => i.kind === "data_product").map((i) => byName[i.name]).filter(Boolean);
  const columns = sources.length
    ? [sources.map((s) => `landing: ${s.lineage.inputs[0]?.location || "?"}`), sources.map((s) => s.name), p.lineage.outputs]
    : [p.lineage.inputs.map((i) => `landing: ${i.location}`), [p.name], p.lineage.outputs];
  const titles = sources.length ? ["Landing zone", "Source-aligned products", `Outputs of ${p.name}`] : ["Landing zone", "This product", "Outputs"];
  const NS = "http://www.w3.org/2000/svg";
  const boxW = 230, boxH = 28, gapX = 90, gapY = 10, top = 34;
  const rows = Math.max(...columns.map((c) => c.length));
  const W = columns.length * boxW + (columns.length - 1) * gapX + 20, H = top + rows * (boxH + gapY) + 10;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const summary = `Lineage of ${p.name}: ${columns.map((c, i) => `${titles[i]}: ${c.join(", ")}`).join("; ")}.`;
  svg.setAttribute("aria-label", summary);
  const add = (name, attrs, text) => {
    const n = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text) n.textContent = text;
    svg.appendChild(n);
    return n;
  };
  add("title", {}, `Lineage of ${p.name}`);
  const pos = columns.map((col, i) => col.map((_, j) => ({ x: 10 + i * (boxW + gapX), y: top + j * (boxH + gapY) })));
  columns.forEach((col, i) => {
    add("text", { x: pos[i][0]?.x ?? 10, y: 18, "font-weight": "600" }, titles[i]);
    col.forEach((label, j) => {
      const { x, y } = pos[i][j];
      add("rect", { x, y, width: boxW, height: boxH, rx: 5, fill: i === 2 ? "#e8eefb" : "#fff", stroke: "#1f5fbf" });
      add("text", { x: x + 8, y: y + 18 }, label.length > 34 ? label.slice(0, 33) + "…" : label);
    });
  });
  for (let i = 0; i + 1 < columns.length; i++) {
    pos[i].forEach((a, j) => {
      const targets = i === 0 ? [pos[1][Math.min(j, pos[1].length - 1)]] : pos[i + 1];
      targets.forEach((b) => add("path", { d: `M${a.x + boxW},${a.y + boxH / 2} C${a.x + boxW + gapX / 2},${a.y + boxH / 2} ${b.x - gapX / 2},${b.y + boxH / 2} ${b.x},${b.y + boxH / 2}`, fill: "none", stroke: "#8aa4d6" }));
    });
  }
  panel.append(
    h("h2", {}, "Lineage"), h("figure", { class: "chart", id: "lineage" }, svg, h("figcaption", { class: "visually-hidden" }, summary)),
    h("h2", {}, "Inputs"),
    h("ul", {}, p.lineage.inputs.map((i) => h("li", {}, i.kind === "landing" ? `Landing files: ${i.location}` : h("a", { href: `#/product/${i.name}` }, `Data product ${i.name}`)))),
    h("h2", {}, "Outputs"),
    h("ul", {}, p.outputs.map((o) => h("li", {}, h("code", {}, o.table), `: ${o.description}`))),
    h("h3", {}, "Assets in the Dagster code location"),
    h("p", { class: "muted" }, p.lineage.assets.join(", ") || "–"),
  );
}

async function model(p, panel) {
  const defs = state.definitions;
  if (p.name !== defs.data_product) {
    panel.append(h("p", {}, "The semantic model is defined on the consumer-aligned product, which reuses this one: ",
      h("a", { href: `#/product/${defs.data_product}/model` }, defs.data_product), "."));
    return;
  }
  const visible = state.meta ? new Set(state.meta.tables.flatMap((t) => [...t.dimensions, ...t.measures, ...t.segments].map((m) => m.name))) : null;
  const maskingFor = state.meta ? Object.fromEntries(state.meta.tables.flatMap((t) => t.dimensions.map((d) => [d.name, d.masking]))) : {};
  panel.append(h("p", { class: "muted" }, state.meta
    ? `Members your groups can see are marked; masking as applied to you.${state.meta.rowFilter ? " Your rows: " + state.meta.rowFilter + "." : ""}`
    : "Sign in to see which members and rows your groups may use, and sample rows."));
  for (const t of defs.tables) {
    const section = h("section", { "data-table": t.name }, h("h2", {}, `${t.title} (${t.name})`), h("p", {}, t.description));
    const rows = [
      ...t.dimensions.map((d) => ["dimension", d]),
      ...t.measures.map((m) => ["measure", m]),
      ...t.segments.map((s) => ["segment", s]),
    ];
    section.append(grid({}, ["Member", "Kind", "Title", "Description", "PII", "Access"], rows.map(([kind, m]) => [
      h("code", {}, m.name), kind, m.title, m.description,
      m.pii ? h("span", { class: "badge pii", title: `masked by default: ${m.masking}` }, `PII · ${m.masking}`) : "",
      visible ? (visible.has(m.name) ? (maskingFor[m.name] && maskingFor[m.name] !== "none" ? `yes, ${maskingFor[m.name]}` : "yes") : "no") : "sign in",
    ]), (i) => ({ "data-member": rows[i][1].name })));
    panel.append(section);
    const mine = state.meta?.tables.find((x) => x.name === t.name);
    if (mine && !mine.rowsAvailable) {
      section.append(h("p", { class: "muted" }, "No sample rows: your row policy does not apply to this table."));
    } else if (state.meta) {
      // a few plain attributes and, where the caller may see them, PII as masked for them
      const shown = t.dimensions.filter((d) => visible.has(d.name) && d.type !== "time");
      const dims = [...shown.filter((d) => !d.pii).slice(0, 3), ...shown.filter((d) => d.pii).slice(-2)].map((d) => d.name);
      if (dims.length) {
        const sample = h("div", { class: "sample", "data-sample": t.name }, h("p", { class: "muted" }, "Loading sample rows…"));
        section.append(h("h3", {}, "Sample rows"), sample);
        load({ dimensions: dims, limit: 5 })
          .then((r) => sample.replaceChildren(grid({}, dims, r.data.map((row) => dims.map((d) => row[d] ?? "–")))))
          .catch((e) => sample.replaceChildren(h("p", { class: "notice" }, `No sample for your group: ${e.message}`)));
      }
    }
  }
}

async function metrics(p, panel) {
  panel.append(h("h2", {}, "North-star metrics"),
    h("dl", { class: "facts" }, (p.metrics || []).flatMap((m) => [h("dt", {}, m.label), h("dd", {}, `${m.definition} (${m.unit})`)])));
  const charts = h("div", { class: "charts", id: "charts" });
  panel.append(h("h2", {}, "Charts"), charts);
  const quality = p.status.model_quality;
  // a figure is null when it is undefined at this as_of (e.g. nobody bought a new category)
  const figure = (v) => (v == null ? "not defined" : v.toFixed(3));
  if (quality) {
    charts.append(Charts.bars("Cross-sell backtest: ours vs DataOS's score",
      `Out-of-time backtest on ${quality.backtest_customers_scored ?? quality.backtest_customers} customers${quality.backtest_sampled_from > quality.backtest_customers ? ` (a sample of the snapshot's ${quality.backtest_sampled_from})` : ""}: ROC AUC ${figure(quality.auc)} for our opportunity score, ${figure(quality.auc_dataos)} for DataOS's score; top-decile precision ${figure(quality.top_decile_precision)} vs ${figure(quality.top_decile_precision_dataos)}.`,
      ["ROC AUC", "Top-decile precision"],
      [{ name: "ours", values: { "ROC AUC": quality.auc, "Top-decile precision": quality.top_decile_precision } },
       { name: "DataOS", values: { "ROC AUC": quality.auc_dataos, "Top-decile precision": quality.top_decile_precision_dataos } }],
      "", true));
    panel.append(backtestReport(quality));
  }
  if (p.name !== state.definitions.data_product) return;
  const latest = h("section", { id: "latest-backtest", "aria-labelledby": "latest-backtest-title" },
    h("h2", { id: "latest-backtest-title" }, "Latest backtest report (retail-dp backtest)"));
  panel.append(latest);
  if (!state.meta) {
    latest.append(h("p", { class: "muted" }, "Sign in to see the latest report of retail-dp backtest."));
    charts.append(h("p", { class: "notice" }, "Sign in to see the figures behind the charts."));
    return;
  }
  const reading = api("/v1/backtest/latest").then((r) => latestBacktest(latest, r),
    (error) => latest.append(h("p", { class: "notice" }, `The latest backtest report is not available to you: ${error.message}`)));
  const visible = new Set(state.meta.tables.flatMap((t) => [...t.dimensions, ...t.measures].map((m) => m.name)));
  const allowed = (query) => [...(query.measures || []), ...(query.dimensions || []), ...(query.timeDimensions || []).map((t) => t.dimension),
    ...(query.filters || []).map((f) => f.member)].every((m) => visible.has(m));
  const chart = (query, draw) => (allowed(query)
    ? load(query).then(draw)
    : Promise.reject(new Error(`your group may not see ${[...(query.measures || []), ...(query.dimensions || [])].join(", ")}`)));
  const jobs = [
    chart({ measures: ["purchase.total_spend"], timeDimensions: [{ dimension: "purchase.purchase_date", granularity: "month" }], limit: 240 }, (r) => {
      const labels = r.data.map((x) => x["purchase.purchase_date.month"].slice(0, 7));
      return Charts.line("Total spend by month", `Total spend per month over ${labels.length} months, from ${labels[0]} to ${labels[labels.length - 1]}.`,
        labels, [{ name: "total spend", points: r.data.map((x) => [x["purchase.purchase_date.month"].slice(0, 7), x["purchase.total_spend"]]) }]);
    }),
    chart({ measures: ["customer_value.customers_valued"], dimensions: ["customer_value.orders_365d_band"] }, (r) => {
      const order = ["0", "1", "2", "3-4", "5-9", "10+"];
      const values = Object.fromEntries(r.data.map((x) => [x["customer_value.orders_365d_band"], x["customer_value.customers_valued"]]));
      return Charts.bars("Purchase frequency distribution", "Customers by number of orders in the last 365 days.", order.filter((o) => o in values), [{ name: "customers", values }]);
    }),
    chart({ measures: ["category_affinity.lift", "category_affinity.support"], dimensions: ["category_affinity.antecedent", "category_affinity.consequent"],
           filters: [{ member: "category_affinity.basket_level", operator: "equals", values: ["customer"] }], limit: 50000 }, affinityHeatmap),
    chart({ measures: ["customer_value.customers_valued"], dimensions: ["customer_value.predicted_clv_band", "customer_value.value_tier"] }, (r) => {
      const bands = ["0-100", "100-250", "250-500", "500-1000", "1000-2500", "2500+"];
      const tiers = ["prospect", "bronze", "silver", "gold", "platinum"];
      const series = tiers.map((t) => ({ name: t, values: Object.fromEntries(r.data.filter((x) => x["customer_value.value_tier"] === t).map((x) => [x["customer_value.predicted_clv_band"], x["customer_value.customers_valued"]])) }));
      return Charts.bars("Predicted CLV distribution by value tier", "Customers by predicted 365-day CLV band, stacked by value tier.", bands, series);
    }),
  ];
  // every job has its handler attached now, so a refusal is never an unhandled rejection
  const settled = jobs.map((job) => job.then(
    (figure) => figure,
    (error) => h("p", { class: "notice" }, `A chart is not available to you: ${error.message}`),
  ));
  for (const item of settled) charts.append(await item);
  await reading;
}

// The opportunity score's calibration: mean predicted against the observed rate per decile of
// the score, before and after the hazard scaling fitted on a held-out snapshot before as_of.
function calibrationTable(o, f) {
  if (!o.calibration_fit) return [];
  const before = o.calibration_before || [];
  const fit = o.calibration_fit;
  return [
    h("p", { class: "muted", id: "latest-calibration-fit" }, `Calibration (${fit.method}): k = ${fit.hazard_scale.toFixed(4)}, ${fit.status}. Mean predicted ${o.mean_predicted_before_calibration == null ? "not defined" : o.mean_predicted_before_calibration.toFixed(3)} before, ${o.mean_predicted == null ? "not defined" : o.mean_predicted.toFixed(3)} after, observed ${o.base_rate == null ? "not defined" : o.base_rate.toFixed(3)}.`),
    grid({ class: "latest-calibration" }, ["Decile", "Customers", "Predicted before", "Predicted after", "Observed"],
      o.calibration.map((d, i) => [num(d.decile), num(d.customers), f(before[i]?.predicted), f(d.predicted), f(d.observed)])),
  ];
}

// The report retail-dp backtest wrote most recently, read from the service on every visit
// (GET /v1/backtest/latest): when it was made, for which as_of and horizon, and its figures
// against the baselines of the same run.
function latestBacktest(section, latest) {
  const r = latest.report;
  if (!r) {
    section.append(h("p", { class: "muted", id: "latest-backtest-none" }, latest.detail || "No backtest report yet."));
    return;
  }
  const f = (v) => num(v == null ? "not defined" : v.toFixed(3));
  // a pred/actual ratio with its 95% interval over resampled buyers, when the report has one
  const ratio = (v, interval) => interval
    ? num(`${v.toFixed(3)} [${interval[0].toFixed(3)}, ${interval[1].toFixed(3)}]`)
    : f(v);
  const o = r.opportunity, c = r.next_best_category, v = r.clv;
  section.append(
    h("dl", { class: "facts", id: "latest-backtest-facts" },
      h("dt", {}, "as_of (T)"), h("dd", { "data-field": "as_of" }, r.as_of),
      h("dt", {}, "Horizon"), h("dd", { "data-field": "horizon_days" }, `${r.horizon_days} days, to ${r.horizon_end}`),
      h("dt", {}, "Created"), h("dd", { "data-field": "created_at" }, r.created_at),
      h("dt", {}, "Report"), h("dd", {}, latest.name)),
    h("h3", {}, `Opportunity score: ${o.customers} buyers at T, ${o.new_category_buyers} bought a new category (base rate ${o.base_rate == null ? "not defined" : o.base_rate.toFixed(3)}, mean predicted ${o.mean_predicted == null ? "not defined" : o.mean_predicted.toFixed(3)})`),
    grid({ class: "latest-scores" }, ["Score", "ROC AUC", "Top-decile lift"],
      Object.entries(o.scores).map(([name, x]) => [name, f(x.auc), f(x.top_decile_lift)])),
    ...calibrationTable(o, f),
    h("h3", {}, `Next-best category: ${c.customers} customers bought a new category`),
    c.ranking ? h("p", { class: "muted", id: "latest-ranking" }, `Ours ranked by ${c.ranking.chosen}: ${c.ranking.detail}.`) : null,
    grid({ class: "latest-rankers" }, ["Ranker", "hit@1", "hit@3"],
      Object.entries(c.rankers).map(([name, x]) => [name, f(x.hit_at_1), f(x.hit_at_3)])),
    h("h3", {}, `CLV over ${r.horizon_days} days: ${v.customers} buyers, purchase model ${v.purchase_model}${v.spend_model ? `, spend model ${v.spend_model.chosen}` : ""}`),
    grid({ class: "latest-clv" }, ["Predictor", "Purchases pred/actual", "Spend pred/actual", "Spearman purchases", "Spearman spend"],
      Object.entries(v.predictors).map(([name, x]) => [name, ratio(x.purchases_ratio, x.purchases_ratio_interval), ratio(x.spend_ratio, x.spend_ratio_interval), f(x.spearman_purchases), f(x.spearman_spend)])),
    h("p", { class: "muted" }, "Pred/actual with its 95% interval over resampled buyers in brackets."),
  );
}

// The backtest published with the product's last run (marts.cross_sell_model, kind "backtest"):
// the model scored 90 days before as_of against what customers bought since, next to the
// simple baselines of the same run. "–": the baseline does not apply to that figure.
function backtestReport(q) {
  const cell = (v) => num(v === undefined ? "–" : v == null ? "not defined" : v.toFixed(3));
  const rows = [
    ["Opportunity score: ROC AUC", q.auc, q.auc_recency, undefined, undefined, q.auc_dataos],
    ["Opportunity score: top-decile lift", q.top_decile_lift, q.top_decile_lift_recency, undefined, undefined, undefined],
    ["Next-best category: hit@1", q.hit_at_1, undefined, q.hit_at_1_popularity, q.hit_at_1_transitions, undefined],
    ["Next-best category: hit@3", q.hit_at_3, undefined, q.hit_at_3_popularity, q.hit_at_3_transitions, undefined],
  ];
  const base = q.base_rate == null ? "not defined" : q.base_rate.toFixed(3);
  const mean = q.mean_score == null ? "not defined" : q.mean_score.toFixed(3);
  return h("section", { class: "backtest-report", "aria-labelledby": "backtest-report-title" },
    h("h2", { id: "backtest-report-title" }, "Backtest published with the last run: ours vs simple baselines"),
    h("p", { class: "muted" }, `${q.backtest_customers_scored ?? 0} customers scored 90 days before as_of; ${q.backtest_new_category_buyers ?? 0} bought a category new to them since (base rate ${base}, mean predicted ${mean}); hit@k over those ${q.hit_customers ?? 0}. Full reports, CLV included: retail-dp backtest.`),
    grid({ class: "backtest-table" }, ["Figure", "Ours", "Recency", "Popularity", "Transition counts", "DataOS"],
      rows.map(([name, ...values]) => [name, ...values.map(cell)])));
}

function quality(p, panel) {
  const checks = p.status.checks;
  panel.append(h("h2", {}, "Service levels"), h("div", {}, sloBadges(p.status.slo)));
  if (p.status.slo_attainment) {
    panel.append(h("h3", {}, "Attainment over recent runs"), grid({}, ["Category", "Runs", "Passed", "Share", "Objective", "Status"],
      p.status.slo_attainment.map((a) => [a.category, num(a.runs), num(`${a.passed}/${a.evaluations}`),
        num(a.share == null ? "–" : `${(a.share * 100).toFixed(1)}%`), num(`${(a.objective * 100).toFixed(0)}%`),
        a.met == null ? "no data" : a.met ? "met" : "breached"])));
  }
  if (p.status.service_levels) {
    const shown = (v, unit) => v == null ? "–" : unit === "ratio" ? `${(v * 100).toFixed(2)}%` : unit === "ms" ? `${Math.round(v)} ms` : `${v} ${unit}`;
    panel.append(h("h3", {}, "Delivery service levels"),
      h("p", { class: "muted" }, "Architecture SLOs from the service's audit log (availability: answers that are not 5xx; p95 latency per endpoint) and governance SLOs (PII masking coverage, requests audited, age of the last access review)."),
      grid({ id: "service-levels" }, ["Kind", "SLO", "Measured", "Target", "Status", "Detail"],
        p.status.service_levels.map((l) => [l.kind, l.name, num(shown(l.measured, l.unit)), num(`${l.comparison} ${shown(l.target, l.unit)}`),
          h("span", { class: `badge ${l.met === true ? "ok" : l.met === false ? "bad" : "warn"}` }, l.met === true ? "met" : l.met === false ? "breached" : "no data"),
          l.detail])));
  }
  const incidents = p.status.open_incidents || [];
  panel.append(h("h3", {}, `Open incidents (${incidents.length})`),
    incidents.length ? h("ul", { id: "incidents" }, incidents.map((i) => h("li", {}, `${i.asset}:${i.check_name} [${i.slo_category}] measured ${i.measured}, target ${i.comparison} ${i.target}, since ${i.opened_at} (${i.occurrences}x)`)))
      : h("p", { id: "incidents" }, "None."));
  panel.append(h("h3", {}, `Checks (${checks.length})`), grid({ id: "checks" }, ["Asset", "Check", "Category", "Measured", "Target", "Status", "Recent runs"],
    checks.map((c) => [
      c.asset, h("code", {}, c.check), c.category, num(c.measured), c.target,
      h("span", { class: `badge ${c.status === "PASSED" ? "ok" : c.status === "FAILED" ? "bad" : "warn"}` }, c.status),
      h("span", { class: "history", role: "img", "aria-label": `last ${c.history.length} runs: ${c.history.map((x) => x.status.toLowerCase()).join(", ")}` },
        c.history.map((x) => h("span", { class: x.status, title: `${x.at ? new Date(x.at * 1000).toISOString() : ""} ${x.status} ${x.measured}` }))),
    ])));
}

function access(p, panel) {
  const origin = location.origin;
  const query = { measures: ["purchase.total_spend"], dimensions: ["product.category"], timeDimensions: [{ dimension: "purchase.purchase_date", granularity: "month" }], limit: 100 };
  const body = JSON.stringify(query);
  const snippets = [
    ["REST (curl)", `curl -s -X POST ${origin}/v1/load \\\n  -H "Authorization: Bearer $RETAIL_DP_KEY" -H "Content-Type: application/json" \\\n  -d '${body}'`],
    ["GraphQL", `curl -s ${origin}/graphql -H "Authorization: Bearer $RETAIL_DP_KEY" -H "Content-Type: application/json" \\\n  -d '{"query": "query ($q: LoadInput!) { load(query: $q) { rows data } }", "variables": {"q": ${body}}}'`],
    ["Python (httpx + pandas)", `import os, httpx, pandas as pd\n\nresponse = httpx.post(\n    "${origin}/v1/load",\n    headers={"Authorization": f"Bearer {os.environ['RETAIL_DP_KEY']}"},\n    json=${body},\n)\nresponse.raise_for_status()\nframe = pd.DataFrame(response.json()["data"])`],
    ["CSV / Parquet export", `curl -s -X POST "${origin}/v1/export?format=parquet" -o spend.parquet \\\n  -H "Authorization: Bearer $RETAIL_DP_KEY" -H "Content-Type: application/json" -d '${body}'`],
  ];
  panel.append(h("h2", {}, "How to connect"), h("p", {}, "Ask the data product owner for an API key (or a JWT from your identity provider) and set it as RETAIL_DP_KEY. Every request is audited."));
  for (const [title, code] of snippets) {
    const copy = h("button", { type: "button", class: "secondary", "aria-label": `Copy the ${title} snippet` }, "Copy");
    copy.addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(code); copy.textContent = "Copied"; } catch { copy.textContent = "Select and copy"; }
    });
    panel.append(h("h3", {}, title), h("div", { class: "snippet" }, h("pre", {}, h("code", {}, code)), copy));
  }
  panel.append(h("h2", {}, "Who may see what"), grid({ id: "groups" }, ["Group", "Description", "Members", "Masking", "Rows"],
    state.definitions.groups.map((g) => [
      g.name, g.description,
      g.members.join(", ") + (g.exclude.length ? ` except ${g.exclude.join(", ")}` : ""),
      Object.entries(g.masking).map(([m, how]) => `${m}: ${how}`).join(", ") || "model defaults",
      g.row_filter || "all",
    ])),
    h("p", { class: "muted" }, "A caller in several groups gets every member any of them grants, the lightest masking among them, and the rows any of them allows."));
}

// -- routing -----------------------------------------------------------------------------------

function route() {
  // a sign-in may come before the catalogue has loaded (a slow service): start() routes once it has
  if (!state.products || !state.definitions) return;
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/";
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "product") productPage(decodeURIComponent(parts[1] || ""), parts[2]);
  else catalogue();
}

async function start() {
  try {
    [state.products, state.definitions] = await Promise.all([api("/v1/data-products"), api("/v1/definitions")]);
    state.products.sort((a, b) => (a.kind === b.kind ? a.title.localeCompare(b.title) : a.kind === "consumer-aligned" ? -1 : 1));
  } catch (error) {
    main.replaceChildren(h("p", { class: "error" }, `The hub cannot reach the service: ${error.message}`));
    return;
  }
  await refreshCaller();
  window.addEventListener("hashchange", route);
  route();
}

start();

// The lift heatmap stays readable with any number of categories: the HEATMAP_TOP categories
// bought together most often (the sum of the support of their pairs, so a rare category's
// noisy lift does not crowd out the ones that matter), and a search that picks which to show.
const HEATMAP_TOP = 12;
function affinityHeatmap(r) {
  const A = "category_affinity.antecedent", B = "category_affinity.consequent";
  const LIFT = "category_affinity.lift", SUPPORT = "category_affinity.support";
  const cells = {}, strongest = {};
  r.data.forEach((x) => {
    (cells[x[A]] ||= {})[x[B]] = x[LIFT];
    for (const c of [x[A], x[B]]) strongest[c] = (strongest[c] ?? 0) + (x[SUPPORT] ?? 0);
  });
  const ranked = Object.keys(strongest).sort((a, b) => strongest[b] - strongest[a] || a.localeCompare(b));
  const caption = "Category affinity (lift, customer baskets)";
  const about = "Lift of buying category B given category A; above 1 (blue) the pair goes together more than chance.";
  const draw = (term) => {
    const shown = ranked.filter((c) => c.toLowerCase().includes(term.toLowerCase())).slice(0, HEATMAP_TOP).sort();
    const of = ranked.length > HEATMAP_TOP ? ` Showing ${shown.length} of ${ranked.length} categories, those bought together most often${term ? ` matching "${term}"` : ""}.` : "";
    return Charts.heatmap(caption, about + of, shown, shown, cells, 1);
  };
  if (ranked.length <= HEATMAP_TOP) return draw("");
  const search = h("input", { type: "search", id: "affinity-search", placeholder: "Filter categories" });
  const box = h("div", { class: "heatmap" }, h("label", { for: "affinity-search" }, `Categories (${ranked.length}): `), search, draw(""));
  search.addEventListener("input", () => box.replaceChild(draw(search.value.trim()), box.lastChild));
  return box;
}
