import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

// A time-series line chart (uPlot on a canvas) that follows its container's width. uPlot
// styles through the CSSOM and its stylesheet (bundled into styles.css), never with inline
// style attributes, so it runs under the console's style-src 'self'.

export interface Series {
  label: string;
  /** A CSS colour; the stylesheet's palette (see styles.css `--accepted`, `--refused`). */
  color: string;
}

export interface ChartProps {
  /** Accessible name: what the chart shows. */
  label: string;
  series: readonly Series[];
  /** `[times (s since epoch), ...one array per series]`. */
  data: readonly (readonly number[])[];
  /** The time axis always spans this many seconds up to the latest point. */
  windowSeconds: number;
  height?: number;
}

export function LineChart(props: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const options: uPlot.Options = {
      width: Math.max(el.clientWidth, 200),
      height: props.height ?? 180,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: (_u, _min, max) => [max - props.windowSeconds, max] },
        y: { range: (_u, _min, max) => [0, Math.max(5, max * 1.1)] },
      },
      axes: [{}, { label: 'per second', size: 56 }],
      series: [
        {},
        ...props.series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: false } })),
      ],
    };
    const chart = new uPlot(options, props.data as uPlot.AlignedData, el);
    plot.current = chart;
    const resize = new ResizeObserver(() => {
      chart.setSize({ width: Math.max(el.clientWidth, 200), height: props.height ?? 180 });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    plot.current?.setData(props.data as uPlot.AlignedData);
  }, [props.data]);

  return <div class="chart" ref={box} role="img" aria-label={props.label} />;
}
