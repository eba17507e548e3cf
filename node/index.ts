/**
 * What needs Node — files and the training loop. Safetensors, checkpoints, CLIP weights and
 * exports, vocabularies and images on disk (reads bounded, writes atomic), the built-in datasets and your own
 * image–caption files, the resumable training loop (`clipgpu train` is a shell over `train`), and the kernel
 * tuning cache. Everything else is in the browser-safe entries (`clipgpu`, `clipgpu/nn`, `clipgpu/clip`).
 * @module clipgpu/node
 */
export { FileError } from '../core/io/files.ts';
export { readSafetensors, saveSafetensors } from '../nn/io/safetensors.ts';
export { readTorchFile } from '../nn/io/pytorch.ts';
export { saveCheckpoint, loadCheckpoint } from '../nn/io/checkpoint.ts';
export { loadClip, readWeights, saveClip, tokenizerFor } from '../clip/io/weights.ts';
export { readTokenizer, saveBpe } from '../clip/io/vocab.ts';
export { readImage, writePng } from '../clip/io/images.ts';
export { exportRun, loadExport, isExportFolder, type ExportFormat } from '../clip/io/interop.ts';
export { builtinSource, trainingData, BUILTIN_DATASETS } from '../clip/data/index.ts';
export { train, checkOptions, TrainingInterrupted, TrainingFailed, type TrainOptions } from '../clip/train.ts';
export { useTuning } from '../kernels/io/tuning.ts';
