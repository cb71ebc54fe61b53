// Types for parse-prometheus-text-format (it ships none): the prom2json shape it returns.
declare module "parse-prometheus-text-format" {
  export type PrometheusMetric = {
    labels?: Record<string, string>;
    /** Counters and gauges. */
    value?: string;
    /** Histograms: cumulative count by upper bound, then count and sum. */
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  };
  export type PrometheusFamily = {
    name: string;
    help: string;
    type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED";
    metrics: PrometheusMetric[];
  };
  export default function parsePrometheusTextFormat(text: string): PrometheusFamily[];
}
