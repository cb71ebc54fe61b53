// The phases of bench:tcp that `--phases` names, in the order they run.

export const PHASES = ["publish", "consume", "small", "latency"] as const;
export type Phase = (typeof PHASES)[number];

/** Parses `--phases` (comma-separated names); consume needs publish, whose records it reads. */
export function parsePhases(text: string): Set<Phase> {
  const phases = new Set<Phase>();
  for (const name of text.split(",")) {
    if (!(PHASES as readonly string[]).includes(name)) {
      throw new RangeError(`--phases ${text}: ${name} is not one of ${PHASES.join(", ")}`);
    }
    phases.add(name as Phase);
  }
  if (phases.has("consume") && !phases.has("publish")) {
    throw new RangeError(`--phases ${text}: consume reads what publish wrote; add publish`);
  }
  return phases;
}
