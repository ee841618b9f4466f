// Draws the page from the embedded JSON export; icicles only when their section opens.

// the JSON export, its integers as decimal strings (see common.js: big)
const data = JSON.parse(document.getElementById("flops-data").textContent);
// the terminal report's order (failures first), the statuses that fail a test, and each
// measurement's rounded figures (its change's percentage, times...) as Python writes them
const page = JSON.parse(document.getElementById("flops-page").textContent);
const FAILING = new Set(page.failing);

function row(table, cells) {
  const tr = table.insertRow();
  for (const cell of cells) tr.append(cell instanceof Node ? cell : element("td", {}, cell));
  return tr;
}

const label = (m) => (m.name === "default" ? m.nodeid : `${m.nodeid} [${m.name}]`);
// numbered in the order the page lists the measurements: #measurement-1 is the first shown
const anchor = (position) => `measurement-${position + 1}`;
const bytesOf = (m) => Object.values(m.communication || {}).reduce((sum, t) => sum + big(t.bytes), 0n);
const signed = (n, text) => (n > 0 ? "+" : n < 0 ? "-" : "") + text;

// -- the tables -------------------------------------------------------------------

function summary() {
  const s = data.summary;
  const statuses = Object.entries(s.statuses).filter(([, n]) => big(n))
    .map(([status, n]) => `${n} ${status}`).join(", ");
  document.getElementById("summary").textContent =
    `Suite total ${short(s.total)} (forward ${short(s.forward)}, backward ` +
    `${short(s.backward)}${big(s.recompute) ? `, recompute ${short(s.recompute)}` : ""}) in ${s.measurements} measurement(s) of ${s.tests} test(s); ` +
    `measurements: ${statuses || "none"}. torch ${data.metadata.torch_version}, ` +
    `pytest-flops ${data.metadata.plugin_version}.`;
}

function suiteTable() {
  const table = document.getElementById("suite");
  const communicates = data.measurements.some((m) => bytesOf(m));
  const recomputes = data.measurements.some((m) => big(m.recompute));
  const roofline = data.measurements.length ? data.measurements[0].roofline : undefined;
  const phases = ["total", "forward", "backward", ...(recomputes ? ["recompute"] : [])];
  const columns = [["test"], ...phases.map((key) => [key, key]),
                   ...(communicates ? [["comm", "comm"]] : []),
                   ...(roofline ? [[`${roofline.gpu} time`, "time"]] : []),
                   ["change", "change"], ["rel. change", "relative"], ["status", "status"]];
  const head = table.createTHead().insertRow();
  for (const [name, key] of columns) head.append(element("th", key ? {"data-key": key} : {}, name));
  const body = table.createTBody();
  const rows = page.order.map((index, position) => {
    const m = data.measurements[index];
    const texts = page.texts[index];
    const change = m.delta ? big(m.delta.total) : null;
    const link = element("a", {href: "#" + anchor(position)}, label(m));
    link.addEventListener("click", () => openTest(position));
    // as in the terminal report: a measurement that recomputed nothing leaves its cell empty
    const cells = [element("td"), ...phases.map((key) => (big(m[key]) || key !== "recompute"
      ? element("td", {title: `${exact(m[key])} FLOP`}, short(m[key])) : element("td")))];
    cells[0].append(link);
    if (communicates) {
      cells.push(element("td", {title: `${exact(bytesOf(m))} bytes`},
                         bytesOf(m) ? short(bytesOf(m), "B") : ""));
    }
    if (roofline) cells.push(element("td", {title: texts.times.Global}, texts.time));
    // the terminal report's cells; on hover, the exact change: at equal FLOPs, the bytes
    // accessed that moved (where both sides recorded them)
    const moved = m.delta && !change ? big(m.delta.bytes_accessed) : 0n;
    cells.push(change === null ? element("td")
      : element("td", {title: moved ? `${signed(moved, exact(abs(moved)))} bytes accessed`
                                    : `${signed(change, exact(abs(change)))} FLOP`}, texts.change));
    cells.push(element("td", {}, texts.relative));
    cells.push(element("td", {class: FAILING.has(m.status) ? "status-failed" : ""},
                       m.budget ? `${m.status} (limit ${m.budget})` : m.status));
    const tr = row(body, cells);
    Object.assign(tr.dataset, {
      total: m.total, forward: m.forward, backward: m.backward, recompute: big(m.recompute),
      comm: bytesOf(m), time: m.roofline ? m.roofline.seconds : 0,
      change: change === null ? -1 : abs(change),
      relative: !m.delta ? -1 : m.delta.relative === null ? Infinity : Math.abs(m.delta.relative),
      status: `${FAILING.has(m.status) ? 0 : 1} ${m.status}`,
    });
    return tr;
  });
  for (const th of head.querySelectorAll("th[data-key]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      // numbers sort largest first, statuses failing first; a second click reverses
      const descending = th.getAttribute("aria-sort") !== "descending";
      for (const other of head.querySelectorAll("th")) other.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      const compare = key === "status"
        ? (a, b) => a.dataset.status.localeCompare(b.dataset.status)
        : (a, b) => compareNumbers(sortValue(b.dataset[key]), sortValue(a.dataset[key]));
      rows.sort((a, b) => (descending ? compare(a, b) : compare(b, a)));
      body.append(...rows);
    });
  }
}

// a sort key as its cell holds it: an exact count, or a time, a ratio (Infinity: from 0)
const sortValue = (text) => (/^-?\d+$/.test(text) ? BigInt(text) : Number(text));

function unsupportedTable() {
  const ops = data.summary.unsupported;
  if (!ops.length) return;
  document.getElementById("unsupported-section").hidden = false;
  const table = document.getElementById("unsupported");
  row(table.createTHead(), ["op", "calls", "tests", "seen in"].map((h) => element("th", {}, h)));
  const body = table.createTBody();
  for (const op of ops) {
    const seen = op.tests.slice(0, 3).join(", ") + (op.tests.length > 3 ? ", ..." : "");
    row(body, [op.op, exact(op.calls), String(op.tests.length), seen]);
  }
}

function communicationTable() {
  const sent = data.measurements.flatMap(
    (m) => Object.entries(m.communication || {}).map(([op, traffic]) => [label(m), op, traffic]));
  if (!sent.length) return;
  document.getElementById("communication-section").hidden = false;
  const table = document.getElementById("communication");
  row(table.createTHead(), ["test", "op", "calls", "bytes"].map((h) => element("th", {}, h)));
  const body = table.createTBody();
  for (const [test, op, traffic] of sent) {
    row(body, [test, op, exact(traffic.calls),
               element("td", {title: `${exact(traffic.bytes)} bytes`}, short(traffic.bytes, "B"))]);
  }
}

// model FLOPs (forward + backward) per token beside 6·N, as in the terminal report
function perTokenTable() {
  if (!data.measurements.some((m) => m.flops_per_token !== undefined)) return;
  document.getElementById("per-token-section").hidden = false;
  const table = document.getElementById("per-token");
  row(table.createTHead(), ["test", "tokens", "FLOP/token", "6·N", "ratio"]
    .map((h) => element("th", {}, h)));
  const body = table.createTBody();
  for (const index of page.order) {
    const m = data.measurements[index];
    if (m.flops_per_token === undefined) continue;
    const {per_token: perToken, ratio} = page.texts[index];
    const sixN = big(m.flops_per_token_6n);
    row(body, [label(m), exact(m.tokens),
               element("td", {title: `${exact(perToken)} FLOP`}, short(perToken)),
               sixN ? element("td", {title: `${exact(sixN)} FLOP`}, short(sixN)) : "", ratio]);
  }
}

// stale snapshot files and stale named measurements ("path [name]"), each with its reason
function staleList() {
  const snapshots = data.snapshots || {};
  const stale = [...(snapshots.stale || []), ...(snapshots.stale_measurements || [])].sort();
  if (!stale.length) return;
  document.getElementById("stale-section").hidden = false;
  const list = document.getElementById("stale");
  const reasons = snapshots.reasons || {};
  for (const entry of stale) {
    const item = list.appendChild(element("li"));
    item.append(element("code", {}, entry));
    if (reasons[entry]) item.append(` (${reasons[entry]})`);
  }
}

// -- icicles ----------------------------------------------------------------------

function rowsOf(m) {
  const rows = {Global: {forward: m.forward, backward: m.backward, recompute: m.recompute,
                         by_op: m.by_op}};
  return Object.assign(rows, m.by_module);
}

// The module tree: a path's parent is its longest proper prefix that is a row too.
function tree(m) {
  const now = rowsOf(m);
  const before = m.snapshot ? rowsOf(m.snapshot) : null;
  const nodes = {};
  for (const path of new Set([...Object.keys(now), ...Object.keys(before || {})])) {
    nodes[path] = {path, now: now[path] || null, before: before ? before[path] || null : null,
                   children: []};
  }
  for (const node of Object.values(nodes)) {
    if (node.path === "Global") continue;
    let parent = node.path;
    do parent = parent.includes(".") ? parent.slice(0, parent.lastIndexOf(".")) : "Global";
    while (!nodes[parent]);
    nodes[parent].children.push(node);
  }
  const order = (a, b) => a.path.localeCompare(b.path, "en", {numeric: true});
  for (const node of Object.values(nodes)) node.children.sort(order);
  // A run and a snapshot kept at different depths are compared at the depth both have:
  // a row deeper than one of them holds is not compared, neither new nor gone.
  const deepest = (rows) => Math.max(...Object.keys(rows).map(levelOf));
  const compared = before ? Math.min(deepest(now), deepest(before)) : Infinity;
  return {root: nodes.Global, hasBaseline: before !== null, compared};
}

const levelOf = (path) => (path === "Global" ? 0 : path.split(".").length);

// recompute: absent from rows without any, and from exports before it was a phase
const flopsOf = (counts) => (counts ? big(counts.forward) + big(counts.backward) + big(counts.recompute)
                                    : 0n);
const sizeOf = (node) => larger(flopsOf(node.now), flopsOf(node.before));

function kindOf(node, hasBaseline, compared) {
  if (!hasBaseline) return "same";
  if (levelOf(node.path) > compared && !(node.now && node.before)) return "deeper";
  if (!node.now) return "gone";
  if (!node.before) return "new";
  const change = flopsOf(node.now) - flopsOf(node.before);
  return change > 0n ? "grown" : change < 0n ? "shrunk" : "same";
}

function titleOf(node, parent, hasBaseline, compared, times) {
  const lines = [node.path];
  if (node.now) {
    const whole = parent ? Number(flopsOf(parent.now)) : 0;
    const share = whole ? ` (${(100 * Number(flopsOf(node.now)) / whole).toFixed(1)}% of ${parent.path})`
                        : "";
    lines.push(`${exact(flopsOf(node.now))} FLOP${share}`);
    lines.push(`forward ${exact(node.now.forward)} FLOP, backward ${exact(node.now.backward)} FLOP` +
               (big(node.now.recompute) ? `, recompute ${exact(node.now.recompute)} FLOP` : ""));
    // the roofline time on --flops-gpu, with its memory-bound share
    if (times && times[node.path]) lines.push(times[node.path]);
  } else {
    lines.push("gone: not measured this time");
  }
  if (kindOf(node, hasBaseline, compared) === "deeper") {
    lines.push(`not compared: the ${node.now ? "snapshot" : "run"} keeps rows ${compared} deep`);
  } else if (hasBaseline) {
    lines.push(`before ${exact(flopsOf(node.before))} FLOP → after ${exact(flopsOf(node.now))} FLOP`);
  }
  return lines.join("\n");
}

function drawIcicle(section, m, index) {
  const {root, hasBaseline, compared} = tree(m);
  const WIDTH = 1000, LEVEL = 24, CHAR = 6.5;
  const scale = Number(larger(sizeOf(root), 1n));
  const svg = svgElement("svg", {class: "icicle", "data-measurement": index});
  const panel = element("div", {class: "ops"});
  let depth = 0;
  const place = (node, parent, x, level) => {
    const width = WIDTH * Number(sizeOf(node)) / scale;
    if (width < 0.5 && parent) return;  // too thin to see or click: its parent's title has it
    depth = Math.max(depth, level + 1);
    const kind = kindOf(node, hasBaseline, compared);
    const group = svgElement("g", {class: "node"});
    const box = svgElement("rect", {
      class: `box ${kind}`, x, y: level * LEVEL, width: Math.max(width, 0.5), height: LEVEL - 2,
      "data-path": node.path, "data-kind": kind, "data-flops": flopsOf(node.now),
    });
    box.append(svgElement("title"));
    box.firstChild.textContent = titleOf(node, parent, hasBaseline, compared, page.texts[index].times);
    box.addEventListener("click", () => showOperators(panel, svg, box, node));
    group.append(box);
    if (node.now && flopsOf(node.now)) {
      const forward = width * Number(big(node.now.forward)) / Number(flopsOf(node.now));
      const recompute = width * Number(big(node.now.recompute)) / Number(flopsOf(node.now));
      group.append(svgElement("rect", {class: "backward", x: x + forward, y: level * LEVEL + 1,
                                       width: Math.max(width - forward - recompute, 0),
                                       height: LEVEL - 4}));
      if (recompute) {
        group.append(svgElement("rect", {class: "recompute", x: x + width - recompute,
                                         y: level * LEVEL + 1, width: recompute,
                                         height: LEVEL - 4}));
      }
    }
    if (width > 40) {
      const name = parent && parent.path !== "Global" && node.path.startsWith(parent.path + ".")
        ? node.path.slice(parent.path.length + 1) : node.path;
      const fits = Math.floor((width - 8) / CHAR);
      const text = svgElement("text", {x: x + 4, y: level * LEVEL + 15});
      text.textContent = name.length > fits ? name.slice(0, Math.max(1, fits - 1)) + "…" : name;
      group.append(text);
    }
    svg.append(group);
    let next = x;
    for (const child of node.children) {
      place(child, node, next, level + 1);
      next += WIDTH * Number(sizeOf(child)) / scale;
    }
  };
  place(root, null, 0, 0);
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${depth * LEVEL}`);
  section.append(svg, panel);
  showOperators(panel, svg, svg.querySelector("rect.box"), root);
}

function showOperators(panel, svg, box, node) {
  for (const selected of svg.querySelectorAll("rect.selected")) selected.classList.remove("selected");
  box.classList.add("selected");
  const now = (node.now && node.now.by_op) || {};
  const before = (node.before && node.before.by_op) || {};
  const table = element("table", {class: "ops-table", "data-path": node.path});
  row(table.createTHead(), ["operator", "FLOP", "before", "change"].map((h) => element("th", {}, h)));
  const body = table.createTBody();
  const ops = [...new Set([...Object.keys(now), ...Object.keys(before)])];
  ops.sort((a, b) => compareNumbers(big(now[b]), big(now[a])) || a.localeCompare(b));
  for (const op of ops) {
    const change = big(now[op]) - big(before[op]);
    row(body, [op, exact(now[op]), node.before ? exact(before[op]) : "",
                node.before && change ? signed(change, exact(abs(change))) : ""]);
  }
  panel.replaceChildren(element("h3", {}, `${node.path}: operators`), table);
}

function openTest(position) {
  const section = document.getElementById(anchor(position));
  if (!section) return;
  section.open = true;
  section.scrollIntoView();
}

function testSections() {
  const container = document.getElementById("tests");
  page.order.forEach((index, position) => {
    const m = data.measurements[index];
    const section = element("details", {class: "test", id: anchor(position)});
    section.append(element("summary", {}, `${label(m)}: ${short(m.total)}, ${m.status}`));
    section.addEventListener("toggle", () => {
      if (section.open && !section.dataset.drawn) {
        section.dataset.drawn = "yes";
        drawIcicle(section, m, index);
      }
    });
    container.append(section);
  });
  if (location.hash.startsWith("#measurement-")) openTest(Number(location.hash.slice(13)) - 1);
}

summary();
suiteTable();
unsupportedTable();
communicationTable();
perTokenTable();
staleList();
testSections();
document.body.dataset.ready = "yes";
