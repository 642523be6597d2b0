// Reads the Prometheus text exposition format (0.0.4) into samples, independently of the
// library that wrote it, so that tests compare numbers rather than strings.
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/gy;

function unescape(value: string): string {
  return value.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const match = LINE.exec(line);
    if (!match) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    const body = match[2] ?? '';
    LABEL.lastIndex = 0;
    let consumed = 0;
    for (let m = LABEL.exec(body); m; m = LABEL.exec(body)) {
      labels[m[1]!] = unescape(m[2]!);
      consumed = LABEL.lastIndex;
    }
    if (consumed !== body.length) throw new Error(`unreadable labels: ${JSON.stringify(line)}`);
    // Prometheus reads these words in any case (Go's ParseFloat); prom-client writes `Nan`.
    const raw = match[3]!.toLowerCase();
    const value = raw === '+inf' || raw === 'inf' ? Infinity : raw === '-inf' ? -Infinity : raw === 'nan' ? NaN : Number(raw);
    if (Number.isNaN(value) && raw !== 'nan') throw new Error(`unreadable value: ${JSON.stringify(line)}`);
    samples.push({ name: match[1]!, labels, value });
  }
  return samples;
}

/** The samples of `name` whose labels include every one given. */
export function matching(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The value of the one sample of `name` with exactly these labels; 0 when there is none (a counter not yet moved). */
export function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const exact = samples.filter((s) => s.name === name && Object.keys(s.labels).length === Object.keys(labels).length
    && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (exact.length > 1) throw new Error(`${name} ${JSON.stringify(labels)}: ${exact.length} samples`);
  return exact[0]?.value ?? 0;
}

/** The samples a server's management listener exposes at /metrics now. */
export async function scrapeMetrics(managementUrl: string): Promise<Sample[]> {
  const res = await fetch(`${managementUrl}/metrics`);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status} ${text}`);
  return parsePrometheus(text);
}

/** How much each of the named samples moved while `action` ran. */
export async function counterMoves(managementUrl: string, names: { name: string; labels?: Record<string, string> }[], action: () => Promise<unknown>): Promise<number[]> {
  const before = await scrapeMetrics(managementUrl);
  await action();
  const after = await scrapeMetrics(managementUrl);
  return names.map(({ name, labels }) => valueOf(after, name, labels) - valueOf(before, name, labels));
}
