// A dependency-free SVG line chart for training curves (loss, accuracy) written next to the checkpoint.

export interface Series {
  name: string;
  points: [number, number][];
  color: string;
}

export function lineChart(title: string, xLabel: string, series: Series[], { width = 640, height = 320 } = {}): string {
  const pad = { left: 56, right: 16, top: 32, bottom: 40 };
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  const [x0, x1] = [Math.min(...all.map((p) => p[0]), 0), Math.max(...all.map((p) => p[0]), 1)];
  const [y0, y1] = [Math.min(...all.map((p) => p[1]), 0), Math.max(...all.map((p) => p[1]), 1e-9)];
  const sx = (x: number) => pad.left + ((x - x0) / (x1 - x0 || 1)) * (width - pad.left - pad.right);
  const sy = (y: number) => height - pad.bottom - ((y - y0) / (y1 - y0 || 1)) * (height - pad.top - pad.bottom);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((t) => y0 + t * (y1 - y0));
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="18" text-anchor="middle" font-size="13">${esc(title)}</text>`,
    ...ticks.map((t) => `<line x1="${pad.left}" x2="${width - pad.right}" y1="${sy(t)}" y2="${sy(t)}" stroke="#ddd"/><text x="${pad.left - 6}" y="${sy(t) + 4}" text-anchor="end">${t.toPrecision(3)}</text>`),
    `<text x="${width / 2}" y="${height - 8}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text x="${pad.left}" y="${height - 24}" text-anchor="middle">${x0}</text><text x="${width - pad.right}" y="${height - 24}" text-anchor="end">${x1}</text>`,
    ...series.map((s, i) => {
      const d = s.points.filter(([, y]) => Number.isFinite(y)).map(([x, y], k) => `${k ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
      return `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/><text x="${width - pad.right - 4}" y="${pad.top + 14 * i + 4}" text-anchor="end" fill="${s.color}">${esc(s.name)}</text>`;
    }),
    '</svg>',
  ].join('\n');
}
