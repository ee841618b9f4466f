// Draws a line chart and a table per test from the embedded history.

// each point's counts as decimal strings (see common.js: big), its total and its change
// from the point before as the terminal writes them
const series = JSON.parse(document.getElementById("history-data").textContent);
const WIDTH = 720, HEIGHT = 220, LEFT = 80, RIGHT = 40, TOP = 12, BOTTOM = 36;
const LINES = ["forward", "backward"];

// The text of a point: its commit, then its numbers and their change from the one before.
function describe(point) {
  const lines = [`${point.short} ${point.date.slice(0, 10)} ${point.subject}`];
  if (point.note) lines.push(point.note);
  if (point.counts) {
    const moved = point.exact_change;
    lines.push(`total ${exact(point.counts.total)} FLOP` + (moved ? `, ${moved}` : ""));
    lines.push(`forward ${exact(point.counts.forward)} FLOP, backward ${exact(point.counts.backward)} FLOP`);
    // what a newer snapshot format holds beside them (bytes are named so)
    for (const [name, value] of Object.entries(point.counts)) {
      if (["total", "forward", "backward"].includes(name)) continue;
      lines.push(`${name} ${exact(value)}${name.includes("bytes") ? " B" : " FLOP"}`);
    }
  }
  return lines.join("\n");
}

function chart(one, readout) {
  const svg = svgElement("svg", {class: "chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
                                 role: "img", "aria-label": `FLOPs of ${one.label} over commits`});
  const points = one.points;
  // positions need no more than a number's 16 digits
  const high = Math.max(1, ...points.filter((p) => p.counts)
    .flatMap((p) => LINES.map((line) => Number(p.counts[line]))));
  const step = points.length > 1 ? (WIDTH - LEFT - RIGHT) / (points.length - 1) : 0;
  const x = (i) => LEFT + (points.length > 1 ? i * step : (WIDTH - LEFT - RIGHT) / 2);
  const y = (v) => TOP + (HEIGHT - TOP - BOTTOM) * (1 - Number(v) / high);
  for (const value of [0, high / 2, high]) {
    svg.append(svgElement("line", {class: "axis", x1: LEFT, x2: WIDTH - RIGHT, y1: y(value), y2: y(value)}));
    const tick = svgElement("text", {x: LEFT - 6, y: y(value) + 4, "text-anchor": "end"});
    tick.textContent = short(value);
    svg.append(tick);
  }
  const every = Math.ceil(points.length / 10);
  points.forEach((point, i) => {
    if (i % every && i !== points.length - 1) return;
    const label = svgElement("text", {x: x(i), y: HEIGHT - BOTTOM + 16, "text-anchor": "middle"});
    label.textContent = point.short;
    svg.append(label);
  });
  for (const line of LINES) {
    // a removed test breaks its lines: one polyline per run of points that have counts
    let run = [];
    const flush = () => {
      if (run.length > 1) svg.append(svgElement("polyline", {class: `line ${line}`, points: run.join(" ")}));
      run = [];
    };
    points.forEach((point, i) => (point.counts ? run.push(`${x(i)},${y(point.counts[line])}`) : flush()));
    flush();
  }
  points.forEach((point, i) => {
    const text = describe(point);
    if (point.counts) {
      for (const line of LINES) {
        const dot = svgElement("circle", {
          class: `point ${line}`, cx: x(i), cy: y(point.counts[line]), r: 5, tabindex: 0,
          "data-commit": point.commit, "data-line": line, "data-value": point.counts[line],
          "aria-label": text,
        });
        dot.append(svgElement("title"));
        dot.firstChild.textContent = text;
        const show = () => {
          for (const other of svg.querySelectorAll("circle.active")) other.classList.remove("active");
          dot.classList.add("active");
          readout.textContent = text;
        };
        dot.addEventListener("mouseenter", show);
        dot.addEventListener("focus", show);
        svg.append(dot);
      }
    }
  });
  return svg;
}

function table(one) {
  const t = element("table", {class: "points"});
  const head = t.createTHead().insertRow();
  for (const [name, cls] of [["date", "text"], ["commit", "text"], ["total", ""], ["forward", ""],
                             ["backward", ""], ["change", ""], ["subject", "text"]]) {
    head.append(element("th", cls ? {class: cls} : {}, name));
  }
  const body = t.createTBody();
  for (const point of one.points) {
    const tr = body.insertRow();
    const counts = point.counts;
    const cells = [
      [point.date.slice(0, 10), "text"], [point.short, "text"],
      [point.total, ""], [counts ? short(counts.forward) : "-", ""],
      [counts ? short(counts.backward) : "-", ""], [point.change, ""],
      [point.subject + (point.note ? ` (${point.note})` : ""), "text subject"],
    ];
    for (const [text, cls] of cells) tr.append(element("td", cls ? {class: cls} : {}, text));
  }
  return t;
}

function draw() {
  const main = document.getElementById("charts");
  document.getElementById("summary").textContent =
    `${series.length} measurement(s), ` +
    `${new Set(series.flatMap((one) => one.points.map((p) => p.commit))).size} commit(s).`;
  series.forEach((one, index) => {
    one.label = one.name === "default" ? one.test : `${one.test} [${one.name}]`;
    const section = element("section", {class: "series", id: `series-${index}`, "data-test": one.test,
                                        "data-name": one.name});
    const readout = element("p", {class: "readout", "aria-live": "polite"});
    section.append(element("h2", {}, one.label), chart(one, readout), readout, table(one));
    main.append(section);
  });
  document.body.setAttribute("data-ready", "yes");
}

draw();
