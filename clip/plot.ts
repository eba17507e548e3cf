// Dependency-free SVG charts of a training run, written next to its checkpoint: the loss (an exponential
// moving average over the faint raw curve, as TensorBoard draws it) and the evaluation metrics (marked at
// the steps they were measured). Axes get round tick values; the legend sits below the plot, clear of the data.

export interface Series {
  name: string;
  points: [number, number][];
  color: string;
  /** 'line' (default), 'faint' (thin and pale, for raw values under their smoothed curve), 'markers' (line and dots). */
  style?: 'line' | 'faint' | 'markers';
}

export interface ChartOptions {
  width?: number;
  height?: number;
  /** Fixed y range (e.g. [0, 1] for accuracies); by default the data's range with round ends. */
  yRange?: [number, number];
}

/** About `count` round tick values (1, 2 or 5 × 10^k apart) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  // A span within rounding of the values (one loss point and its moving average) counts as none: steps below
  // the values' precision would never advance.
  const span = (hi - lo > Math.abs(hi) * 1e-9 ? hi - lo : 0) || Math.abs(hi) || 1;
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let t = Math.floor(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  if (ticks[ticks.length - 1] < hi) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

/** Exponential moving average with bias correction: the smoothed value at step k weighs older steps by `weight`^age. */
export function smooth(points: [number, number][], weight = 0.95): [number, number][] {
  let avg = 0;
  return points.map(([x, y], k) => {
    avg = weight * avg + (1 - weight) * y;
    return [x, avg / (1 - weight ** (k + 1))];
  });
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
const label = (v: number) => (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(1) : String(Number(v.toPrecision(4))));

export function lineChart(title: string, xLabel: string, yLabel: string, series: Series[], { width = 720, height = 400, yRange }: ChartOptions = {}): string {
  const columns = 2;
  const legendRows = Math.ceil(series.length / columns);
  const pad = { left: 64, right: 24, top: 36, bottom: 56 + 18 * legendRows };
  const finite = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xs = niceTicks(Math.min(0, ...finite.map((p) => p[0])), Math.max(1, ...finite.map((p) => p[0])));
  const ys = yRange
    ? niceTicks(yRange[0], yRange[1])
    : niceTicks(Math.min(...finite.map((p) => p[1]), Infinity), Math.max(...finite.map((p) => p[1]), -Infinity));
  const [x0, x1] = [xs[0], xs[xs.length - 1]];
  const [y0, y1] = [ys[0], ys[ys.length - 1]];
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const sx = (x: number) => pad.left + ((x - x0) / (x1 - x0 || 1)) * plotW;
  const sy = (y: number) => pad.top + plotH - ((y - y0) / (y1 - y0 || 1)) * plotH;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${pad.left + plotW / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
    ...ys.map(
      (t) =>
        `<line x1="${pad.left}" x2="${pad.left + plotW}" y1="${sy(t)}" y2="${sy(t)}" stroke="#e4e4e4"/>` +
        `<text x="${pad.left - 8}" y="${sy(t) + 4}" text-anchor="end">${label(t)}</text>`,
    ),
    ...xs.map(
      (t) =>
        `<line x1="${sx(t)}" x2="${sx(t)}" y1="${pad.top}" y2="${pad.top + plotH}" stroke="#f0f0f0"/>` +
        `<text x="${sx(t)}" y="${pad.top + plotH + 18}" text-anchor="middle">${label(t)}</text>`,
    ),
    `<rect x="${pad.left}" y="${pad.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`,
    `<text x="${pad.left + plotW / 2}" y="${pad.top + plotH + 38}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text transform="translate(16 ${pad.top + plotH / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
  ];
  series.forEach((s, i) => {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    const d = pts.map(([x, y], k) => `${k ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
    const faint = s.style === 'faint';
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${faint ? 1 : 2}"${faint ? ' stroke-opacity="0.25"' : ''}/>`);
    if (s.style === 'markers') for (const [x, y] of pts) out.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.5" fill="${s.color}"/>`);
    const lx = pad.left + (i % columns) * (plotW / columns);
    const ly = height - 18 * legendRows + 18 * Math.floor(i / columns) - 4;
    out.push(
      `<line x1="${lx}" x2="${lx + 18}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="${faint ? 1 : 2}"` +
        `${faint ? ' stroke-opacity="0.4"' : ''}/><text x="${lx + 24}" y="${ly}">${esc(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}

/** The training loss per step: the raw values, faint, under their moving average. */
export function lossChart(history: { step: number; loss: number }[]): string {
  const raw: [number, number][] = history.map((h) => [h.step, h.loss]);
  return lineChart('training loss', 'step', 'contrastive loss', [
    { name: 'loss (raw)', points: raw, color: '#1f77b4', style: 'faint' },
    { name: 'loss (moving average)', points: smooth(raw), color: '#1f77b4' },
  ]);
}

/** Evaluation metrics (values in [0, 1]) at the steps they were measured, each point marked. */
export function evalChart(evals: { step: number; metrics: Record<string, number> }[]): string {
  const colors = ['#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf'];
  const names = [...new Set(evals.flatMap((e) => Object.keys(e.metrics)))];
  return lineChart(
    'evaluation',
    'step',
    'accuracy / recall',
    names.map((name, i) => ({
      name,
      points: evals.filter((e) => name in e.metrics).map((e): [number, number] => [e.step, e.metrics[name]]),
      color: colors[i % colors.length],
      style: 'markers',
    })),
    { yRange: [0, 1] },
  );
}
