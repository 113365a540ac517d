// Small SVG charts of our own: lines with interval bands, histograms and horizontal bars.
// Each chart is an <svg role="img"> with a <title> and a description, and the colours come from CSS classes.
import { s, h, fmtNum, saveFile, toast } from './ui.js';

function niceTicks(lo, hi, count = 5) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (lo === hi) { lo -= 1; hi += 1; }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) ?? raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}

// Ticks on whole hours (UTC), at most `max` of them.
function timeTicks(lo, hi, max = 5) {
  const H = 3600e3;
  const step = [1, 2, 3, 6, 12, 24, 48, 72, 168, 336, 720].map((x) => x * H).find((st) => (hi - lo) / st <= max) ?? (hi - lo) / max;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) ticks.push(v);
  return ticks;
}

function extent(values) {
  let lo = Infinity; let hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return lo === Infinity ? [0, 1] : [lo, hi];
}

// Chart text is read at 12 px on screen whatever size the chart is drawn at: the SVG scales with its box,
// so its font size, in the SVG's own units, is 12 × (viewBox width / drawn width). Set through the CSSOM,
// which the CSP allows (it forbids style attributes).
const TEXT_PX = 12;
const textScaler = typeof ResizeObserver === 'function' ? new ResizeObserver((entries) => {
  for (const { target, contentRect } of entries) {
    const vb = target.viewBox?.baseVal;
    if (contentRect.width > 0 && vb?.width) target.style.fontSize = `${((TEXT_PX * vb.width) / contentRect.width).toFixed(2)}px`;
  }
}) : null;

function frame({ width, height, title, desc }) {
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title, preserveAspectRatio: 'xMidYMid meet' });
  textScaler?.observe(svg);
  svg.append(s('title', {}, title));
  if (desc) svg.append(s('desc', {}, desc));
  return svg;
}

const pathOf = (pts) => pts.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]))
  .map((p, i) => `${i ? 'L' : 'M'}${p[0].toFixed(1)},${p[1].toFixed(1)}`).join('');

// Splits at missing values so a gap stays a gap.
function segments(points) {
  const out = []; let cur = [];
  for (const p of points) {
    if (Number.isFinite(p[1])) cur.push(p); else if (cur.length) { out.push(cur); cur = []; }
  }
  if (cur.length) out.push(cur);
  return out;
}

/**
 * series: [{points: [[x, y]], cls: 's1', dash}], bands: [{lo: [[x, y]], hi: [[x, y]], cls: 'band80'}],
 * dots: [{points, cls}], markers: [{x, label}], xFormat(x), yLabel, xLabel.
 */
export function lineChart({ title, desc, width = 640, height = 230, series = [], bands = [], dots = [], markers = [],
  xFormat = fmtNum, xTime = false, yLabel = '', xLabel = '', yMin, yMax }) {
  // The unit gets a line of its own above the plot, clear of the top tick's label.
  const pad = { l: 52, r: 12, t: yLabel ? 26 : 10, b: 34 };
  const all = [...series.flatMap((x) => x.points), ...bands.flatMap((b) => [...b.lo, ...b.hi]), ...dots.flatMap((d) => d.points)];
  let [x0, x1] = extent(all.map((p) => p[0]));
  let [y0, y1] = extent(all.map((p) => p[1]));
  if (yMin !== undefined) y0 = Math.min(y0, yMin);
  if (yMax !== undefined) y1 = Math.max(y1, yMax);
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const yPad = (y1 - y0) * 0.06 || 1; y0 -= yPad; y1 += yPad;
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  const svg = frame({ width, height, title, desc });
  for (const t of niceTicks(y0, y1, 4)) {
    svg.append(s('line', { class: 'grid-line', x1: pad.l, x2: width - pad.r, y1: Y(t), y2: Y(t) }));
    svg.append(s('text', { x: pad.l - 6, y: Y(t) + 4, 'text-anchor': 'end' }, fmtNum(t)));
  }
  const xt = (xTime ? timeTicks : niceTicks)(x0, x1, Math.max(2, Math.floor(width / 110)));
  for (const t of xt) svg.append(s('text', { x: X(t), y: height - pad.b + 16, 'text-anchor': 'middle' }, xFormat(t)));
  svg.append(s('line', { class: 'axis', x1: pad.l, x2: width - pad.r, y1: height - pad.b, y2: height - pad.b }));
  svg.append(s('line', { class: 'axis', x1: pad.l, x2: pad.l, y1: pad.t, y2: height - pad.b }));
  if (yLabel) svg.append(s('text', { x: 4, y: 2, 'dominant-baseline': 'hanging' }, yLabel));
  if (xLabel) svg.append(s('text', { x: width - pad.r, y: height - 4, 'text-anchor': 'end' }, xLabel));
  for (const b of bands) {
    const lo = b.lo.filter((p) => Number.isFinite(p[1])); const hi = b.hi.filter((p) => Number.isFinite(p[1]));
    if (!lo.length || !hi.length) continue;
    const d = pathOf([...hi.map((p) => [X(p[0]), Y(p[1])]), ...lo.slice().reverse().map((p) => [X(p[0]), Y(p[1])])]) + 'Z';
    svg.append(s('path', { class: b.cls, d, 'data-series': b.name }));
  }
  for (const m of markers) {
    svg.append(s('line', { class: 'marker', x1: X(m.x), x2: X(m.x), y1: pad.t, y2: height - pad.b }));
    if (m.label) svg.append(s('text', { x: X(m.x) + 4, y: pad.t + 10 }, m.label));
  }
  for (const se of series) {
    for (const seg of segments(se.points)) {
      svg.append(s('path', { class: [se.cls, se.dash && 'dash'].filter(Boolean).join(' '), d: pathOf(seg.map((p) => [X(p[0]), Y(p[1])])), 'data-series': se.name }));
    }
  }
  for (const d of dots) {
    const g = s('g', { 'data-series': d.name });
    for (const p of d.points) if (Number.isFinite(p[1])) g.append(s('circle', { class: d.cls, cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.2 }));
    svg.append(g);
  }
  return exportable(svg);
}

// Presentation attributes an exported chart needs: the page's CSS classes do not travel with the file, and
// the strict CSP forbids style attributes, so the computed values are written as SVG attributes instead.
const PAINT = ['fill', 'fill-opacity', 'stroke', 'stroke-width', 'stroke-dasharray', 'stroke-opacity', 'opacity',
  'font-family', 'font-size', 'font-weight', 'text-anchor', 'dominant-baseline'];

/** The chart as a standalone SVG document at its natural size, on the page's background colour. */
export function svgDocument(svg) {
  const clone = svg.cloneNode(true);
  const from = [svg, ...svg.querySelectorAll('*')];
  const to = [clone, ...clone.querySelectorAll('*')];
  from.forEach((el, i) => {
    const cs = getComputedStyle(el);
    for (const p of PAINT) { const v = cs.getPropertyValue(p); if (v) to[i].setAttribute(p, v); }
    to[i].removeAttribute('class');
  });
  // Standalone, the chart is drawn at its natural size, where 12 units are 12 px.
  for (const t of clone.querySelectorAll('text')) t.setAttribute('font-size', `${TEXT_PX}px`);
  clone.removeAttribute('style');
  const [, , w, ht] = svg.getAttribute('viewBox').split(' ').map(Number);
  clone.setAttribute('xmlns', 'http://www.w3.org/2000/svg');
  clone.setAttribute('width', w); clone.setAttribute('height', ht);
  const bg = getComputedStyle(document.body).backgroundColor || '#fff';
  clone.insertBefore(s('rect', { x: 0, y: 0, width: w, height: ht, fill: bg }), clone.querySelector('desc, title')?.nextSibling ?? clone.firstChild);
  return { text: new XMLSerializer().serializeToString(clone), width: w, height: ht };
}

const fileName = (title) => (title || 'chart').replace(/[^\w.-]+/g, '-').replace(/^-+|-+$/g, '').toLowerCase() || 'chart';

/** Saves the chart as SVG, or as a PNG at twice its size (drawn from the SVG through a data: URL, which the CSP allows). */
export function exportChart(svg, kind) {
  const doc = svgDocument(svg);
  const name = fileName(svg.getAttribute('aria-label'));
  if (kind === 'svg') { saveFile(new Blob([doc.text], { type: 'image/svg+xml' }), `${name}.svg`); return Promise.resolve(); }
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      const canvas = document.createElement('canvas');
      canvas.width = doc.width * 2; canvas.height = doc.height * 2;
      const ctx = canvas.getContext('2d');
      ctx.scale(2, 2);
      ctx.drawImage(img, 0, 0, doc.width, doc.height);
      canvas.toBlob((b) => { if (b) { saveFile(b, `${name}.png`); resolve(); } else reject(new Error('PNG encoding failed')); }, 'image/png');
    };
    img.onerror = () => reject(new Error('the chart could not be drawn'));
    img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(doc.text)}`;
  });
}

/** The chart with its SVG and PNG download buttons. */
function exportable(svg) {
  const label = svg.getAttribute('aria-label') || 'chart';
  const btn = (kind) => h('button', { type: 'button', class: 'btn small chart-export-btn', dataset: { kind }, title: `Save “${label}” as ${kind.toUpperCase()}`,
    onclick: () => exportChart(svg, kind).catch((e) => toast('bad', `Could not save the chart: ${e.message}`)) }, kind.toUpperCase());
  return h('div', { class: 'chart-box' }, svg, h('div', { class: 'chart-export' }, btn('svg'), btn('png')));
}

/** Two overlapping count histograms over [0, 1] (e.g. scores of healthy vs failing rows) with a threshold line. */
export function histogram({ title, desc, a, b, aName, bName, threshold, width = 640, height = 200 }) {
  const pad = { l: 46, r: 10, t: 10, b: 30 };
  const n = Math.max(a?.length ?? 0, b?.length ?? 0);
  const svg = frame({ width, height, title, desc });
  if (!n) return exportable(svg);
  // Shares within each group, so a rare class is as visible as the common one.
  const norm = (arr) => { const t = (arr ?? []).reduce((x, y) => x + y, 0) || 1; return (arr ?? []).map((v) => v / t); };
  const A = norm(a); const B = norm(b);
  const top = Math.max(...A, ...B, 1e-9);
  const bw = (width - pad.l - pad.r) / n;
  const Y = (v) => height - pad.b - (v / top) * (height - pad.t - pad.b);
  for (const t of niceTicks(0, top, 3)) {
    svg.append(s('line', { class: 'grid-line', x1: pad.l, x2: width - pad.r, y1: Y(t), y2: Y(t) }));
    svg.append(s('text', { x: pad.l - 6, y: Y(t) + 4, 'text-anchor': 'end' }, `${Math.round(t * 100)}%`));
  }
  for (let i = 0; i < n; i++) {
    const x = pad.l + i * bw;
    if (A[i]) svg.append(s('rect', { class: 'barfill', x: x + 1, width: bw / 2 - 1, y: Y(A[i]), height: Math.max(0, height - pad.b - Y(A[i])) }));
    if (B[i]) svg.append(s('rect', { class: 'barfill2', x: x + bw / 2, width: bw / 2 - 1, y: Y(B[i]), height: Math.max(0, height - pad.b - Y(B[i])) }));
  }
  for (const t of [0, 0.25, 0.5, 0.75, 1]) svg.append(s('text', { x: pad.l + t * (width - pad.l - pad.r), y: height - 10, 'text-anchor': 'middle' }, t.toFixed(2)));
  svg.append(s('line', { class: 'axis', x1: pad.l, x2: width - pad.r, y1: height - pad.b, y2: height - pad.b }));
  if (Number.isFinite(threshold)) {
    const x = pad.l + threshold * (width - pad.l - pad.r);
    svg.append(s('line', { class: 'marker', x1: x, x2: x, y1: pad.t, y2: height - pad.b }));
    svg.append(s('text', { x: x - 4, y: pad.t + 10, 'text-anchor': 'end' }, 'threshold'));
  }
  const legend = h('div', { class: 'legend' }, h('span', {}, h('i', { class: 'l1' }), aName), h('span', {}, h('i', { class: 'l2' }), bName));
  return h('div', {}, exportable(svg), legend);
}

/** Horizontal bars for [name, share] pairs (feature importance), as an accessible list. */
export function hbars(items, { fmt = (v) => `${(v * 100).toFixed(1)} %`, label = 'values' } = {}) {
  const max = Math.max(...items.map((i) => i[1]), 1e-12);
  return h('ul', { class: 'hbars', 'aria-label': label },
    items.map(([name, v]) => {
      const fill = h('span');
      fill.style.width = `${(v / max) * 100}%`;
      return h('li', { class: 'hbar' }, h('span', { class: 'hbar-name mono', title: name }, name), h('span', { class: 'bar' }, fill), h('span', { class: 'hbar-val' }, fmt(v)));
    }));
}

export function legend(items) {
  return h('div', { class: 'legend' }, items.map(([cls, text]) => h('span', {}, h('i', { class: cls }), text)));
}
