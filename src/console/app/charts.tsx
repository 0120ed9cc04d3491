import { useEffect, useRef } from 'preact/hooks';
// Chart.js (MIT, Chart.js org, released monthly, no runtime dependency but @kurkle/color):
// chosen over uPlot because stacked and horizontal category bars, legends and tooltips are
// built in, and it draws on a canvas, setting styles through the CSSOM only, so it works under
// the console's CSP (style-src 'self', no inline <style>). Only the bar chart parts are
// registered, and this module is loaded only when the overview opens (its own chunk).
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip, type ChartDataset } from 'chart.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);
Chart.defaults.font.family = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
Chart.defaults.color = '#3b4354';
Chart.defaults.animation = false;

export interface BarSeries {
  label: string;
  data: number[];
  color: string;
}

/**
 * One bar chart. The canvas is an image to assistive technology (its `summary` is its
 * accessible name); the numbers themselves are in the table next to it (`describedBy`).
 */
export function BarChart(props: {
  labels: string[];
  series: BarSeries[];
  summary: string;
  describedBy?: string;
  stacked?: boolean;
  horizontal?: boolean;
  /** Values are fractions shown as percentages (axis 0–100 %). */
  percent?: boolean;
  /** Values are seconds. */
  seconds?: boolean;
  height?: number;
}) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart<'bar', number[], string> | null>(null);

  useEffect(() => {
    if (!canvas.current) return;
    const datasets: ChartDataset<'bar', number[]>[] = props.series.map((s) => ({
      label: s.label,
      data: s.data,
      backgroundColor: s.color,
      borderWidth: 0,
      maxBarThickness: 48,
    }));
    const valueAxis = props.horizontal ? 'x' : 'y';
    const format = (v: number) => (props.percent ? `${Math.round(v * 100)} %` : props.seconds ? duration(v) : Number.isInteger(v) ? String(v) : '');
    chart.current?.destroy();
    chart.current = new Chart<'bar', number[], string>(canvas.current, {
      type: 'bar',
      // A label with a line break is drawn on two lines.
      data: { labels: props.labels.map((l) => (l.includes('\n') ? l.split('\n') : l)) as unknown as string[], datasets },
      options: {
        indexAxis: props.horizontal ? 'y' : 'x',
        responsive: true,
        maintainAspectRatio: false,
        plugins: {
          legend: { display: props.series.length > 1, position: 'bottom', labels: { boxWidth: 12 } },
          tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${format(Number(c.raw))}` } },
        },
        scales: {
          x: { stacked: !!props.stacked, ticks: { autoSkip: true, maxRotation: 0 }, grid: { display: !!props.horizontal } },
          y: { stacked: !!props.stacked, grid: { display: !props.horizontal } },
          [valueAxis]: {
            stacked: !!props.stacked,
            beginAtZero: true,
            ...(props.percent ? { max: 1 } : {}),
            ticks: { precision: 0, callback: (v: string | number) => format(Number(v)) },
          },
        },
      },
    });
    return () => {
      chart.current?.destroy();
      chart.current = null;
    };
  }, [JSON.stringify([props.labels, props.series, props.stacked, props.horizontal, props.percent, props.seconds])]);

  return (
    <div class="chart" style={{ height: `${props.height ?? 260}px` }}>
      <canvas ref={canvas} role="img" aria-label={props.summary} aria-describedby={props.describedBy} />
    </div>
  );
}

/** Seconds for people: 45 s, 12 min, 3.5 h, 2 d. */
export function duration(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds)) return '—';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  if (seconds < 36 * 3600) return `${(seconds / 3600).toFixed(1).replace(/\.0$/, '')} h`;
  return `${(seconds / 86_400).toFixed(1).replace(/\.0$/, '')} d`;
}
