// Small SVG charts built with DOM calls (no markup strings): a line chart of values over time per model and a
// stacked bar chart of counts per minute per model.

const NS = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f5f8b", "#b5462a", "#2d7d46", "#7a4fa3", "#9a6b00", "#00707a", "#a3336b"];
const W = 480;
const H = 200;
const PAD = { left: 48, right: 12, top: 12, bottom: 28 };

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function frame(title, models) {
  const figure = document.createElement("figure");
  figure.className = "plot";
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  const legend = document.createElement("ul");
  legend.className = "legend";
  models.forEach((model, index) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = COLOURS[index % COLOURS.length];
    item.append(swatch, document.createTextNode(model));
    legend.append(item);
  });
  figure.append(caption, svg, legend);
  return { figure, svg };
}

function axes(svg, t0, t1, vmax, unit) {
  const x = (t) => PAD.left + ((t - t0) / Math.max(t1 - t0, 1)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / (vmax || 1)) * (H - PAD.top - PAD.bottom);
  svg.append(el("line", { x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom, class: "axis" }));
  svg.append(el("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom, class: "axis" }));
  for (const fraction of [0, 0.5, 1]) {
    const value = vmax * fraction;
    svg.append(el("line", { x1: PAD.left, y1: y(value), x2: W - PAD.right, y2: y(value), class: "grid" }));
    const label = value >= 100 ? Math.round(value) : Number(value.toPrecision(2));
    svg.append(el("text", { x: PAD.left - 4, y: y(value) + 4, "text-anchor": "end", class: "tick" }, String(label)));
  }
  const time = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  svg.append(el("text", { x: PAD.left, y: H - 8, class: "tick" }, time(t0)));
  svg.append(el("text", { x: W - PAD.right, y: H - 8, "text-anchor": "end", class: "tick" }, time(t1)));
  svg.append(el("text", { x: PAD.left + 4, y: PAD.top + 10, class: "tick" }, unit));
  return { x, y };
}

// series: {model: [[time ms, value], ...]}
export function lineChart(title, series, unit) {
  const models = Object.keys(series);
  const { figure, svg } = frame(title, models);
  const points = models.flatMap((m) => series[m]);
  if (!points.length) return figure;
  const t0 = Math.min(...points.map((p) => p[0]));
  const t1 = Math.max(...points.map((p) => p[0]));
  const vmax = Math.max(...points.map((p) => p[1])) * 1.1 || 1;
  const { x, y } = axes(svg, t0, t1, vmax, unit);
  models.forEach((model, index) => {
    const colour = COLOURS[index % COLOURS.length];
    const path = series[model].map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
    svg.append(el("path", { d: path, fill: "none", stroke: colour, "stroke-width": 1.5 }));
    for (const [t, v] of series[model]) {
      const dot = el("circle", { cx: x(t), cy: y(v), r: 2.5, fill: colour });
      dot.append(el("title", {}, `${model}: ${Number(v.toPrecision(4))} ${unit}`));
      svg.append(dot);
    }
  });
  return figure;
}

// counts: {model: {minute ms: count}}
export function barChart(title, counts) {
  const models = Object.keys(counts);
  const { figure, svg } = frame(title, models);
  const minutes = [...new Set(models.flatMap((m) => Object.keys(counts[m]).map(Number)))].sort((a, b) => a - b);
  if (!minutes.length) return figure;
  const totals = minutes.map((minute) => models.reduce((sum, m) => sum + (counts[m][minute] || 0), 0));
  const vmax = Math.max(...totals) * 1.1 || 1;
  const t0 = minutes[0];
  const t1 = minutes[minutes.length - 1] + 60000;
  const { x, y } = axes(svg, t0, t1, vmax, "requests");
  const width = Math.max(2, x(t0 + 60000) - x(t0) - 2);
  for (const minute of minutes) {
    let base = 0;
    models.forEach((model, index) => {
      const count = counts[model][minute] || 0;
      if (!count) return;
      const rect = el("rect", {
        x: x(minute) + 1,
        y: y(base + count),
        width,
        height: y(base) - y(base + count),
        fill: COLOURS[index % COLOURS.length],
      });
      rect.append(el("title", {}, `${model}: ${count}`));
      svg.append(rect);
      base += count;
    });
  }
  return figure;
}
