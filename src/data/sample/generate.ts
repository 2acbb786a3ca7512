// Templated patent text for the built-in sample corpus: abstracts and claim sets assembled from
// small original vocabularies by a seeded generator, so a tiny model has more than a few KB of
// IP-shaped text (repeated structure, varied content) and the run is reproducible from the seed.
import { SeededStream } from '../../util/rng.js';
import { SAMPLE_TEXTS, type SampleDocument } from './texts.js';

const DEVICES = ['valve', 'hinge', 'sensor housing', 'filter cartridge', 'battery pack', 'drill chuck', 'lamp', 'pump', 'conveyor roller', 'door closer', 'heat exchanger', 'seat frame'];
const MATERIALS = ['aluminium', 'stainless steel', 'glass-fibre reinforced polymer', 'ceramic', 'silicone rubber', 'bamboo composite'];
const PARTS = ['a base plate', 'a cover', 'a spring', 'a seal ring', 'a shaft', 'a bracket', 'a circuit board', 'a motor', 'a latch', 'a gasket', 'a channel', 'a damper'];
const EFFECTS = ['reduces noise', 'lowers energy use', 'simplifies assembly', 'prevents leakage', 'extends service life', 'allows tool-free maintenance', 'improves heat dissipation'];
const RELATIONS = ['mounted on', 'connected to', 'arranged inside', 'pressed against', 'integrally formed with', 'detachably fixed to'];
const FIELDS = ['household appliances', 'vehicle components', 'medical devices', 'building hardware', 'agricultural machines', 'consumer electronics'];

function pick<T>(rng: SeededStream, xs: readonly T[]): T {
  return xs[rng.int(xs.length)]!;
}

function distinct<T>(rng: SeededStream, xs: readonly T[], n: number): T[] {
  const pool = [...xs];
  const out: T[] = [];
  while (out.length < n && pool.length) out.push(pool.splice(rng.int(pool.length), 1)[0]!);
  return out;
}

/** One templated patent document (title, abstract, claims). */
export function generatePatent(rng: SeededStream): string {
  const device = pick(rng, DEVICES);
  const material = pick(rng, MATERIALS);
  const parts = distinct(rng, PARTS, 3 + rng.int(2));
  const effect = pick(rng, EFFECTS);
  const field = pick(rng, FIELDS);
  const rel = (): string => pick(rng, RELATIONS);
  const strip = (p: string): string => p.replace(/^an? /, '');
  const claims = [
    `1. A ${device} comprising ${parts[0]}, ${parts[1]} and ${parts[2]}, wherein ${parts[1]!.replace(/^an? /, 'the ')} is ${rel()} ${parts[0]!.replace(/^an? /, 'the ')}.`,
    `2. The ${device} of claim 1, wherein the ${strip(parts[0]!)} is made of ${material}.`,
    `3. The ${device} of claim 1 or 2, wherein the ${strip(parts[2]!)} is ${rel()} the ${strip(parts[1]!)}.`,
  ];
  if (parts.length > 3) claims.push(`4. The ${device} of any one of claims 1 to 3, further comprising ${parts[3]} ${rel()} the ${strip(parts[0]!)}.`);
  return [
    `Title: ${device[0]!.toUpperCase()}${device.slice(1)} with ${strip(parts[1]!)} of ${material}.`,
    `Field: ${field}.`,
    `Abstract: A ${device} has ${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]}. The ${strip(parts[1]!)} is ${rel()} the ${strip(parts[0]!)}, which ${effect} compared with known designs in which these parts are separate.`,
    'Claims:',
    ...claims,
  ].join('\n');
}

export interface SampleCorpusOptions {
  /** Templated patent documents added to the hand-written texts. Default 400. */
  generated?: number;
  seed?: number;
}

/** The hand-written sample texts followed by `generated` templated patents. */
export function sampleCorpus(opts: SampleCorpusOptions = {}): SampleDocument[] {
  const rng = new SeededStream('sample-corpus', opts.seed ?? 0);
  const out: SampleDocument[] = [...SAMPLE_TEXTS];
  for (let i = 0; i < (opts.generated ?? 400); i++) out.push({ category: 'patent', text: generatePatent(rng) });
  return out;
}
