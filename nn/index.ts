/**
 * The layer library on the tensor API — modules with PyTorch's parameter names, initialisation,
 * optimizers and schedules, mixed precision, and the safetensors, PyTorch .pt and checkpoint formats on bytes
 * (files are `clipgpu/node`). Runs in Node and in a browser alike.
 * @module clipgpu/nn
 */
export { Module, StateDictError, type StateDict } from './module.ts';
export {
  Layer, Linear, Embedding, LayerNorm, Conv2d, BatchNorm2d, AvgPool2d, ReLU, GELU, QuickGELU, ModuleList, Sequential, type Conv2dConfig,
} from './layers.ts';
export { MultiheadAttention, causalMask, type AttentionOptions } from './attention.ts';
/** Parameter initialisation as torch.nn.init: seeded, on the GPU, written in place (`init.zeros(layer.bias!)`). */
export * as init from './init.ts';
export {
  AdamW, SGD, clipGradNorm, decayGroups, cosineWithWarmup, constantWithWarmup,
  type AdamWOptions, type SGDOptions, type GroupOptions, type GroupSpec, type ParamGroup,
} from './optim.ts';
export { autocast, computeDType, GradScaler, type ComputeDType, type LossScaleOptions } from './precision.ts';
export {
  parseSafetensors, serializeSafetensors, serializeSafetensorsHost, toTensors, SafetensorsError, type HostTensor, type SafetensorsFile,
} from './safetensors.ts';
export { parseTorchFile, TorchFileError } from './pytorch.ts';
export { serializeCheckpoint, restoreCheckpoint, checkpointInfo, type CheckpointInfo, type HasState } from './checkpoint.ts';
