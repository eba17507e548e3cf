/**
 * CLIP on the nn library — the model (ViT and ModifiedResNet image towers, the text
 * transformer, the loss), configs, OpenAI's BPE tokenizer, image preprocessing, weights on bytes (OpenAI,
 * open_clip and Hugging Face layouts), one training step, zero-shot classification, retrieval and linear
 * probes, and the procedural scenes dataset. Runs in Node and in a browser alike; reading and writing files,
 * the training loop and exports are `clipgpu/node`.
 * @module clipgpu/clip
 */
export {
  CLIP, VisionTransformer, ModifiedResNet, Transformer, ResidualAttentionBlock, clipLoss, contrastiveLogits, l2normalize, type ClipOutput,
} from './model.ts';
export { CONFIGS, inferConfig, ConfigError, type ClipConfig } from './config.ts';
export { Tokenizer, TokenizerError, trainBpe, bpeBytes, DEFAULT_VOCAB, OPENAI_VOCAB_SIZE, type TokenizeOptions } from './tokenizer.ts';
export {
  preprocess, decodeImage, encodePng, resizeBicubic, resizeCenterCrop, randomResizedCrop, ImageError, CLIP_MEAN, CLIP_STD, DEFAULT_IMAGE_LIMITS,
  type RgbImage, type ImageLimits,
} from './preprocess.ts';
export { clipFromSafetensors, serializeClip, detectLayout, type Layout, type LoadOptions } from './weights.ts';
export { ENSEMBLE_TEMPLATES, SINGLE_TEMPLATE, fillTemplate, type Prompts } from './prompts.ts';
export {
  textEncoderFor, zeroShotClassifier, zeroShotProbabilities, defaultTemplates, encodeImages, probeFeatures, retrievalRecall, topK, linearProbe, evaluateClip,
  type TextEncoder, type EvalResult, type RetrievalResult, type ProbeSplit, type ProbeResult,
} from './evaluate.ts';
export { trainStep, trainStepAmp, CapturedAmpStep, lossAndGradients, type StepOptions } from './step.ts';
export { sceneSource, SHAPE_WORLD, type World } from './data/scenes.ts';
export type { DataSource, CaptionedImages, LabelledImages, ZeroShotTask } from './data/source.ts';
