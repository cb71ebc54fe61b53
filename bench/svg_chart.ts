// Line charts as inline SVG, for the self-contained report: no scripts, no external files.
// Linear or log axes, shaded bands (the warm-up), dashed series, a legend.

export type Point = readonly [x: number, y: number];

export type Series = {
  label: string;
  color: string;
  points: readonly Point[];
  dashed?: boolean;
};

export type Tick = { value: number; label: string };

export type Axis = {
  label: string;
  log?: boolean;
  min?: number;
  max?: number;
  /** Fixed ticks; otherwise "nice" ones are chosen. */
  ticks?: readonly Tick[];
  format?: (value: number) => string;
};

export type Band = { from: number; to: number; label: string };

export type ChartSpec = {
  title: string;
  x: Axis;
  y: Axis;
  series: readonly Series[];
  bands?: readonly Band[];
  width?: number;
  height?: number;
};

const MARGIN = { left: 64, right: 30, top: 34, bottom: 70 };
const LEGEND_ROW_HEIGHT = 16;
/** The smallest value a log axis shows: zeros are drawn here. */
const LOG_FLOOR = 1e-3;

export function escapeXml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

/** A compact number: 1.2k, 35M, 0.25. */
export function formatNumber(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 1e9) return `${trim(value / 1e9)}G`;
  if (abs >= 1e6) return `${trim(value / 1e6)}M`;
  if (abs >= 1e3) return `${trim(value / 1e3)}k`;
  return trim(value);
}

function trim(value: number): string {
  return String(Number(value.toPrecision(3)));
}

/** About `count` ticks at 1, 2 or 5 × 10^k steps covering [min, max]. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const rough = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= rough) ?? rough;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

/** Powers of ten covering [min, max], with 2 and 5 between when there are few decades. */
export function logTicks(min: number, max: number): number[] {
  const low = Math.floor(Math.log10(min));
  const high = Math.ceil(Math.log10(max));
  const between = high - low <= 3 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let e = low; e <= high; e++) {
    for (const m of between) {
      const v = Number((m * 10 ** e).toPrecision(12));
      if (v >= min * 0.999 && v <= max * 1.001) ticks.push(v);
    }
  }
  return ticks;
}

type Scale = { map: (value: number) => number; ticks: Tick[] };

function scaleFor(
  axis: Axis,
  values: number[],
  from: number,
  to: number,
  headroom: boolean,
): Scale {
  const format = axis.format ?? formatNumber;
  const clean = values.filter(Number.isFinite).map((v) => (axis.log ? Math.max(v, LOG_FLOOR) : v));
  let min = axis.min ?? (clean.length > 0 ? Math.min(...clean) : 0);
  let max = axis.max ?? (clean.length > 0 ? Math.max(...clean) : 1);
  if (axis.log) {
    min = 10 ** Math.floor(Math.log10(Math.max(min, LOG_FLOOR)));
    max = 10 ** Math.ceil(Math.log10(Math.max(max, min * 10)));
  } else if (!(max > min)) {
    max = min + 1;
  } else if (headroom && axis.max === undefined) {
    // Headroom: the axis ends at the first nice tick above the data, not on the top line.
    const ticks = niceTicks(min, max * 1.05);
    const step = ticks.length > 1 ? ticks[1]! - ticks[0]! : max - min;
    max = Math.ceil((max * 1.05) / step) * step;
  }
  const t = (v: number) => (axis.log ? Math.log10(Math.max(v, LOG_FLOOR)) : v);
  const [lo, hi] = [t(min), t(max)];
  const map = (value: number) => from + ((t(value) - lo) / (hi - lo)) * (to - from);
  const ticks =
    axis.ticks ??
    (axis.log ? logTicks(min, max) : niceTicks(min, max)).map((value) => ({
      value,
      label: format(value),
    }));
  return { map, ticks: ticks.filter((tick) => tick.value >= min && tick.value <= max) };
}

/** One chart as an `<svg>` element. */
export function lineChart(spec: ChartSpec): string {
  const width = spec.width ?? 540;
  const plotHeight = (spec.height ?? 320) - MARGIN.top - MARGIN.bottom;
  const plot = {
    left: MARGIN.left,
    right: width - MARGIN.right,
    top: MARGIN.top,
    bottom: MARGIN.top + plotHeight,
  };
  const legendItems = layoutLegend(spec.series, plot);
  const legendRows = (legendItems.at(-1)?.row ?? 0) + 1;
  const height = plot.bottom + MARGIN.bottom + (legendRows - 1) * LEGEND_ROW_HEIGHT;
  const points = spec.series.flatMap((s) => s.points);
  const x = scaleFor(
    spec.x,
    points.map((p) => p[0]),
    plot.left,
    plot.right,
    false,
  );
  const y = scaleFor(
    spec.y,
    points.map((p) => p[1]),
    plot.bottom,
    plot.top,
    true,
  );
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(spec.title)}">`,
    `<text x="${plot.left}" y="20" class="chart-title">${escapeXml(spec.title)}</text>`,
    ...bands(spec.bands ?? [], x, plot),
    ...grid(x, y, plot),
    `<rect x="${plot.left}" y="${plot.top}" width="${plot.right - plot.left}" ` +
      `height="${plot.bottom - plot.top}" fill="none" stroke="#888"/>`,
    ...spec.series.map((series) => path(series, x, y)),
    axisLabels(spec, plot),
    legend(legendItems, plot.bottom + 56),
    "</svg>",
  ];
  return parts.join("\n");
}

type Plot = { left: number; right: number; top: number; bottom: number };

function bands(list: readonly Band[], x: Scale, plot: Plot): string[] {
  return list.map((band) => {
    const from = Math.max(plot.left, x.map(band.from));
    const to = Math.min(plot.right, x.map(band.to));
    return (
      `<rect x="${r(from)}" y="${plot.top}" width="${r(Math.max(0, to - from))}" ` +
      `height="${plot.bottom - plot.top}" fill="#eee"/>` +
      `<text x="${r(from + 4)}" y="${plot.top + 14}" class="band">${escapeXml(band.label)}</text>`
    );
  });
}

function grid(x: Scale, y: Scale, plot: Plot): string[] {
  const lines: string[] = [];
  for (const tick of x.ticks) {
    const at = r(x.map(tick.value));
    lines.push(
      `<line x1="${at}" x2="${at}" y1="${plot.top}" y2="${plot.bottom}" class="grid"/>`,
      `<text x="${at}" y="${plot.bottom + 16}" text-anchor="middle" class="tick">` +
        `${escapeXml(tick.label)}</text>`,
    );
  }
  for (const tick of y.ticks) {
    const at = r(y.map(tick.value));
    lines.push(
      `<line x1="${plot.left}" x2="${plot.right}" y1="${at}" y2="${at}" class="grid"/>`,
      `<text x="${plot.left - 6}" y="${at + 4}" text-anchor="end" class="tick">` +
        `${escapeXml(tick.label)}</text>`,
    );
  }
  return lines;
}

function path(series: Series, x: Scale, y: Scale): string {
  if (series.points.length === 0) return "";
  const d = series.points
    .filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]))
    .map((p, i) => `${i === 0 ? "M" : "L"}${r(x.map(p[0]))},${r(y.map(p[1]))}`)
    .join(" ");
  const dash = series.dashed === true ? ` stroke-dasharray="5 4"` : "";
  return (
    `<path d="${d}" fill="none" stroke="${series.color}" stroke-width="1.8"${dash}>` +
    `<title>${escapeXml(series.label)}</title></path>`
  );
}

function axisLabels(spec: ChartSpec, plot: Plot): string {
  const middleY = (plot.top + plot.bottom) / 2;
  return (
    `<text x="${(plot.left + plot.right) / 2}" y="${plot.bottom + 34}" text-anchor="middle" ` +
    `class="axis">${escapeXml(spec.x.label)}</text>` +
    `<text x="14" y="${middleY}" text-anchor="middle" class="axis" ` +
    `transform="rotate(-90 14 ${middleY})">${escapeXml(spec.y.label)}</text>`
  );
}

type LegendItem = { series: Series; x: number; row: number };

/** Legend items left to right, wrapping to a new row at the plot's right edge. */
function layoutLegend(series: readonly Series[], plot: Plot): LegendItem[] {
  const items: LegendItem[] = [];
  let x = plot.left;
  let row = 0;
  for (const s of series) {
    const itemWidth = 36 + s.label.length * 6.6;
    if (x > plot.left && x + itemWidth > plot.right) {
      row++;
      x = plot.left;
    }
    items.push({ series: s, x, row });
    x += itemWidth;
  }
  return items;
}

function legend(items: readonly LegendItem[], top: number): string {
  return items
    .map(({ series: s, x, row }) => {
      const y = top + row * LEGEND_ROW_HEIGHT;
      const dash = s.dashed === true ? ` stroke-dasharray="5 4"` : "";
      return (
        `<line x1="${x}" x2="${x + 22}" y1="${y - 4}" y2="${y - 4}" stroke="${s.color}" ` +
        `stroke-width="2.5"${dash}/>` +
        `<text x="${x + 27}" y="${y}" class="legend">${escapeXml(s.label)}</text>`
      );
    })
    .join("");
}

function r(value: number): string {
  return value.toFixed(1);
}
