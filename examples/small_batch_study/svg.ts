/**
 * A dependency-free SVG line chart: accuracy against batch size on a log-2 x
 * axis, with optional error bars (mean ± sd).
 *
 * Hand-written on purpose: the maintained SVG chart renderer for Node (vega 6,
 * with vega-lite) ships as ES modules only, which this project's CommonJS
 * jest/ts-jest and esbuild-register setup does not load, and its CommonJS
 * line (vega 5) pulls in about 27 vega packages for one static chart; d3
 * needs a DOM (jsdom) to emit SVG. The chart is one function.
 */

export interface Series {
  label: string;
  /** x > 0 (plotted as log2 x), y in [0, 1]; sd, when given, draws an error bar from y − sd to y + sd. */
  points: Array<{x: number; y: number; sd?: number}>;
  /** Draw dashed, so that a line lying on another stays visible. */
  dashed?: boolean;
}

export interface ChartText {
  title: string;
  /** One or more lines under the title. */
  subtitle: string[];
  xLabel: string;
  yLabel: string;
}

const COLORS = ['#7f7f7f', '#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2'];
const WIDTH = 800;
const HEIGHT = 476;
const PLOT = {left: 70, top: 76, right: 540, bottom: 406};
/** Sideways shift between series, and half-width of an error bar's caps, in pixels. */
const DODGE = 7;
const CAP = 3;

export function lineChart(series: Series[], text: ChartText): string {
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  const ys = series.flatMap((s) => s.points.flatMap((p) => [p.y - (p.sd ?? 0), p.y + (p.sd ?? 0)]))
      .filter(Number.isFinite);
  const xMin = Math.log2(Math.min(...xs));
  const xMax = Math.log2(Math.max(...xs));
  // Round the y range out to whole 5% steps so the ticks fall on round numbers.
  const yMin = Math.max(0, Math.floor(Math.min(...ys) * 20 - 0.5) / 20);
  const yMax = Math.min(1, Math.ceil(Math.max(...ys) * 20 + 0.5) / 20);
  const px = (x: number) => PLOT.left + (xMax === xMin ? 0.5 : (Math.log2(x) - xMin) / (xMax - xMin)) *
      (PLOT.right - PLOT.left);
  // With error bars, each series is shifted a few pixels sideways so that bars at the same x stay apart.
  const withBars = series.some((s) => s.points.some((p) => p.sd != null));
  const dodge = (i: number) => withBars ? (i - (series.length - 1) / 2) * DODGE : 0;
  const py = (y: number) => PLOT.bottom - (y - yMin) / (yMax - yMin) * (PLOT.bottom - PLOT.top);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" ` +
        `viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="16">${escape(text.title)}</text>`,
    ...text.subtitle.map((line, i) =>
      `<text x="${WIDTH / 2}" y="${42 + 16 * i}" text-anchor="middle" fill="#555">${escape(line)}</text>`),
  ];
  for (const x of [...new Set(xs)].sort((a, b) => a - b)) {
    out.push(`<line x1="${f(px(x))}" y1="${PLOT.top}" x2="${f(px(x))}" y2="${PLOT.bottom}" stroke="#eee"/>`,
        `<text x="${f(px(x))}" y="${PLOT.bottom + 18}" text-anchor="middle">${x}</text>`);
  }
  for (let y = yMin; y <= yMax + 1e-9; y += 0.05) {
    out.push(`<line x1="${PLOT.left}" y1="${f(py(y))}" x2="${PLOT.right}" y2="${f(py(y))}" stroke="#eee"/>`,
        `<text x="${PLOT.left - 8}" y="${f(py(y) + 4)}" text-anchor="end">${Math.round(y * 100)}%</text>`);
  }
  out.push(`<rect x="${PLOT.left}" y="${PLOT.top}" width="${PLOT.right - PLOT.left}" ` +
      `height="${PLOT.bottom - PLOT.top}" fill="none" stroke="#333"/>`,
  `<text x="${(PLOT.left + PLOT.right) / 2}" y="${PLOT.bottom + 42}" text-anchor="middle">` +
      `${escape(text.xLabel)}</text>`,
  `<text transform="translate(20 ${(PLOT.top + PLOT.bottom) / 2}) rotate(-90)" text-anchor="middle">` +
      `${escape(text.yLabel)}</text>`);
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const points = s.points.filter((p) => Number.isFinite(p.y)).sort((a, b) => a.x - b.x);
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    const sx = (x: number) => px(x) + dodge(i);
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${dash} ` +
        `points="${points.map((p) => `${f(sx(p.x))},${f(py(p.y))}`).join(' ')}"><title>${escape(s.label)}</title></polyline>`);
    for (const p of points) {
      out.push(`<circle cx="${f(sx(p.x))}" cy="${f(py(p.y))}" r="3" fill="${color}"/>`);
      if (p.sd == null) continue;
      const [x, low, high] = [sx(p.x), py(p.y - p.sd), py(p.y + p.sd)];
      out.push(`<path class="error-bar" stroke="${color}" stroke-width="1.5" fill="none" ` +
          `d="M${f(x - CAP)},${f(low)}H${f(x + CAP)}M${f(x)},${f(low)}V${f(high)}M${f(x - CAP)},${f(high)}H${f(x + CAP)}">` +
          `<title>${escape(`${s.label}, ${p.x}: ${(p.y * 100).toFixed(1)} ± ${(p.sd * 100).toFixed(1)}`)}</title></path>`);
    }
    const ly = PLOT.top + 10 + i * 22;
    out.push(`<line x1="${PLOT.right + 20}" y1="${ly}" x2="${PLOT.right + 44}" y2="${ly}" stroke="${color}" ` +
        `stroke-width="2"${dash}/>`, `<text x="${PLOT.right + 50}" y="${ly + 4}">${escape(s.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function f(v: number): string {
  return v.toFixed(1);
}

function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
