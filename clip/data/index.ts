// The datasets the trainer and `npm run eval` know by name, and the one place that turns `--dataset` /
// `--train-data` into a data source.
import { DEFAULT_DATA_LIMITS, fileSource, readPairs, type DataLimits } from './files.ts';
import { greySource, greyWorld } from './mnist.ts';
import { SHAPE_WORLD, sceneSource } from './scenes.ts';
import type { DataSource } from './source.ts';

export type { CaptionedImages, DataSource, LabelledImages, ZeroShotTask } from './source.ts';

/** The names `--dataset` accepts. */
export const BUILTIN_DATASETS = ['scenes', 'mnist', 'fashion-mnist', 'mnist-scenes', 'fashion-scenes'] as const;

/** The named built-in datasets: procedural scenes; MNIST and Fashion-MNIST; scenes of their coloured images. */
export function builtinSource(name: string, seed: number): DataSource {
  switch (name) {
    case 'scenes':
      return sceneSource(SHAPE_WORLD, seed);
    case 'mnist':
    case 'fashion-mnist':
      return greySource(name, seed);
    case 'mnist-scenes':
      return sceneSource(greyWorld('mnist'), seed);
    case 'fashion-scenes':
      return sceneSource(greyWorld('fashion-mnist'), seed);
  }
  throw new Error(`unknown dataset '${name}' (built in: ${BUILTIN_DATASETS.join(', ')}; or --train-data PATH)`);
}


/**
 * The training data: the pairs listed by `trainData` (a CSV/TSV, a folder, or webdataset shards; unusable rows
 * are logged) when given, else the built-in `dataset`.
 */
export function trainingData({
  dataset = 'scenes',
  trainData,
  seed,
  log,
  limits = DEFAULT_DATA_LIMITS,
}: {
  dataset?: string;
  trainData?: string;
  seed: number;
  log: (line: string) => void;
  limits?: DataLimits;
}): DataSource {
  if (!trainData) return builtinSource(dataset, seed);
  const listing = readPairs(trainData, limits);
  log(`${trainData}: ${listing.pairs.length} image–caption pairs, ${listing.skipped.length} skipped`);
  // Each reason names its row; a line cut at 400 characters still does, and a huge field never floods the log.
  for (const line of listing.skipped.slice(0, 10)) log(`  skipped ${line.length > 400 ? `${line.slice(0, 400)}…` : line}`);
  if (listing.skipped.length > 10) log(`  … and ${listing.skipped.length - 10} more`);
  return fileSource(listing.pairs, seed, log, limits);
}
