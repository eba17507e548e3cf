// CLIP configurations as data: the published models, small ones for a CPU adapter, and a config inferred
// from a state dict's shapes exactly as OpenAI's build_model does.

/** A CLIP architecture as data (OpenAI's build_model arguments): towers' widths, depths, heads and resolutions. */
export interface ClipConfig {
  embedDim: number;
  imageResolution: number;
  /** A number of transformer layers (ViT), or the four stage depths of a ModifiedResNet. */
  visionLayers: number | [number, number, number, number];
  visionWidth: number;
  /** Patch size for a ViT; null for a ResNet. */
  visionPatchSize: number | null;
  contextLength: number;
  vocabSize: number;
  transformerWidth: number;
  transformerHeads: number;
  transformerLayers: number;
  /** Width of one vision attention head (open_clip's `head_width`); 64 (the reference) when absent. */
  visionHeadWidth?: number;
}

const text = { contextLength: 77, vocabSize: 49408 };

/** The published configs (RN50 … ViT-L/14@336px) and small ones for CPU adapters (ViT-tiny, ViT-scenes, …), by name. */
export const CONFIGS: Record<string, ClipConfig> = {
  RN50: {
    embedDim: 1024, imageResolution: 224, visionLayers: [3, 4, 6, 3], visionWidth: 64, visionPatchSize: null,
    ...text, transformerWidth: 512, transformerHeads: 8, transformerLayers: 12,
  },
  RN101: {
    embedDim: 512, imageResolution: 224, visionLayers: [3, 4, 23, 3], visionWidth: 64, visionPatchSize: null,
    ...text, transformerWidth: 512, transformerHeads: 8, transformerLayers: 12,
  },
  RN50x4: {
    embedDim: 640, imageResolution: 288, visionLayers: [4, 6, 10, 6], visionWidth: 80, visionPatchSize: null,
    ...text, transformerWidth: 640, transformerHeads: 10, transformerLayers: 12,
  },
  RN50x16: {
    embedDim: 768, imageResolution: 384, visionLayers: [6, 8, 18, 8], visionWidth: 96, visionPatchSize: null,
    ...text, transformerWidth: 768, transformerHeads: 12, transformerLayers: 12,
  },
  RN50x64: {
    embedDim: 1024, imageResolution: 448, visionLayers: [3, 15, 36, 10], visionWidth: 128, visionPatchSize: null,
    ...text, transformerWidth: 1024, transformerHeads: 16, transformerLayers: 12,
  },
  'ViT-B/32': {
    embedDim: 512, imageResolution: 224, visionLayers: 12, visionWidth: 768, visionPatchSize: 32,
    ...text, transformerWidth: 512, transformerHeads: 8, transformerLayers: 12,
  },
  'ViT-B/16': {
    embedDim: 512, imageResolution: 224, visionLayers: 12, visionWidth: 768, visionPatchSize: 16,
    ...text, transformerWidth: 512, transformerHeads: 8, transformerLayers: 12,
  },
  'ViT-L/14': {
    embedDim: 768, imageResolution: 224, visionLayers: 24, visionWidth: 1024, visionPatchSize: 14,
    ...text, transformerWidth: 768, transformerHeads: 12, transformerLayers: 12,
  },
  'ViT-L/14@336px': {
    embedDim: 768, imageResolution: 336, visionLayers: 24, visionWidth: 1024, visionPatchSize: 14,
    ...text, transformerWidth: 768, transformerHeads: 12, transformerLayers: 12,
  },
  // Small models that train in minutes on a 2-core CPU adapter.
  'ViT-tiny': {
    embedDim: 64, imageResolution: 32, visionLayers: 2, visionWidth: 64, visionPatchSize: 8,
    contextLength: 16, vocabSize: 49408, transformerWidth: 64, transformerHeads: 2, transformerLayers: 2,
  },
  // The trainer's default: ViT-tiny with eight 8-wide vision heads in place of one 64-wide head. Same matmul
  // FLOPs, and it learns the built-in scenes markedly faster (bench/RESULTS.md, training runs: one 64-wide head
  // 63%, four 16-wide heads 89%, eight 8-wide heads 97% held-out in the same time).
  'ViT-scenes': {
    embedDim: 64, imageResolution: 32, visionLayers: 2, visionWidth: 64, visionPatchSize: 8,
    contextLength: 16, vocabSize: 49408, transformerWidth: 64, transformerHeads: 2, transformerLayers: 2, visionHeadWidth: 8,
  },
  // For MNIST-family images at their native 28 px: patch 4 (49 tokens), four 16-wide vision heads.
  'ViT-mnist': {
    embedDim: 64, imageResolution: 28, visionLayers: 2, visionWidth: 64, visionPatchSize: 4,
    contextLength: 16, vocabSize: 49408, transformerWidth: 64, transformerHeads: 2, transformerLayers: 2, visionHeadWidth: 16,
  },
  'RN-tiny': {
    embedDim: 64, imageResolution: 64, visionLayers: [1, 1, 1, 1], visionWidth: 8, visionPatchSize: null,
    contextLength: 16, vocabSize: 49408, transformerWidth: 64, transformerHeads: 2, transformerLayers: 2,
  },
};

/** Vision attention heads as the reference derives them: width/64 for a ViT, width·32/64 for a ResNet (the
 * attention pool's width is 32× the stem width); another head width where the config names one. */
export function visionHeads(c: ClipConfig): number {
  const headWidth = c.visionHeadWidth ?? 64;
  const width = Array.isArray(c.visionLayers) ? c.visionWidth * 32 : c.visionWidth;
  if (c.visionHeadWidth !== undefined && width % headWidth !== 0) {
    throw new ConfigError(`visionHeadWidth ${headWidth} does not divide the vision attention width ${width}`);
  }
  return Math.max(1, Math.floor(width / headWidth));
}

/** A config that cannot be built or inferred: names the field or key and the values that disagree. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** OpenAI's build_model: the config from the shapes of an OpenAI-layout state dict. */
export function inferConfig(shapes: Map<string, readonly number[]>): ClipConfig {
  const need = (k: string): readonly number[] => {
    const s = shapes.get(k);
    if (!s) throw new ConfigError(`cannot infer the CLIP config: key '${k}' is missing (is this an OpenAI-layout CLIP state dict?)`);
    return s;
  };
  const keys = [...shapes.keys()];
  const countDistinct = (prefix: string, at: number) => new Set(keys.filter((k) => k.startsWith(prefix)).map((k) => k.split('.')[at])).size;
  const isVit = shapes.has('visual.proj');
  let vision: Pick<ClipConfig, 'visionLayers' | 'visionWidth' | 'visionPatchSize' | 'imageResolution'>;
  if (isVit) {
    const conv = need('visual.conv1.weight');
    const grid = Math.round(Math.sqrt(need('visual.positional_embedding')[0] - 1));
    vision = {
      visionWidth: conv[0],
      visionLayers: keys.filter((k) => k.startsWith('visual.') && k.endsWith('.attn.in_proj_weight')).length,
      visionPatchSize: conv[conv.length - 1],
      imageResolution: conv[conv.length - 1] * grid,
    };
  } else {
    const layers = [1, 2, 3, 4].map((b) => countDistinct(`visual.layer${b}.`, 2)) as [number, number, number, number];
    vision = {
      visionLayers: layers,
      visionWidth: need('visual.layer1.0.conv1.weight')[0],
      visionPatchSize: null,
      imageResolution: Math.round(Math.sqrt(need('visual.attnpool.positional_embedding')[0] - 1)) * 32,
    };
  }
  const transformerWidth = need('ln_final.weight')[0];
  return {
    embedDim: need('text_projection')[1],
    ...vision,
    contextLength: need('positional_embedding')[0],
    vocabSize: need('token_embedding.weight')[0],
    transformerWidth,
    transformerHeads: Math.max(1, Math.floor(transformerWidth / 64)),
    transformerLayers: countDistinct('transformer.resblocks.', 2),
  };
}
