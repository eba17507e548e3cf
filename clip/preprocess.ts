// CLIP's image preprocessing (OpenAI's `_transform`): decode, resize the shorter side to n with bicubic
// interpolation, center-crop n×n, scale to [0, 1], normalise with CLIP's mean and std; out comes CHW f32.
// Decoding uses fast-png and clip/jpeg.ts (libjpeg-turbo's pixels, as PIL decodes; jpeg-js for CMYK), pure
// JavaScript on bytes, so a page decodes exactly as Node does. The resize is PIL's, bit for bit (separable,
// antialiased when shrinking: the cubic kernel, a = −0.5, stretched by the scale factor; fixed-point weights;
// 8-bit rounding after each pass). Both are checked against PIL's own output (test/pil.test.ts).
import { convertIndexedToRgb, decode as decodePng, encode as encodePngBytes, type DecodedPng } from 'fast-png';
import jpeg from 'jpeg-js';
import { decodeJpeg } from './jpeg.ts';

/** The per-channel mean (RGB, of values in [0, 1]) CLIP normalises images with. */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
/** The per-channel standard deviation (RGB, of values in [0, 1]) CLIP normalises images with. */
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** An image that cannot be used: not PNG or JPEG, corrupt, or over the size and pixel limits; names the source. */
export class ImageError extends Error {
  override name = 'ImageError';
}

/** An RGB image, 3 floats per pixel in [0, 255], row-major HWC. */
export interface RgbImage {
  width: number;
  height: number;
  data: Float32Array;
}

function fromRgba(width: number, height: number, rgba: Uint8Array): RgbImage {
  const data = new Float32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) for (let c = 0; c < 3; c++) data[3 * i + c] = rgba[4 * i + c];
  return { width, height, data };
}

/**
 * A decoded PNG of any colour type and bit depth as RGB in [0, 255] (alpha ignored, as CLIP's
 * `convert("RGB")` does for the colour values): palettes expanded, grey replicated, 16-bit scaled, 1/2/4-bit
 * grey unpacked.
 */
function pngToRgb(png: DecodedPng): RgbImage {
  const { width, height } = png;
  const data = new Float32Array(width * height * 3);
  if (png.palette) {
    const rgb = convertIndexedToRgb(png);
    const channels = rgb.length / (width * height);
    for (let i = 0; i < width * height; i++) for (let c = 0; c < 3; c++) data[3 * i + c] = rgb[channels * i + c];
    return { width, height, data };
  }
  const max = 2 ** png.depth - 1;
  const channels = png.channels;
  const rowBytes = Math.ceil((width * channels * png.depth) / 8);
  const sample = (x: number, y: number, c: number): number => {
    if (png.depth >= 8) return png.data[(y * width + x) * channels + c];
    const bit = x * png.depth; // sub-byte depths are grey only: one channel, packed from the high bits
    return (png.data[y * rowBytes + (bit >> 3)] >> (8 - png.depth - (bit & 7))) & max;
  };
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < 3; c++) data[3 * (y * width + x) + c] = (sample(x, y, channels >= 3 ? c : 0) * 255) / max;
  return { width, height, data };
}

/** Limits on what an image may cost before it is decoded: its encoded size and its pixel count. */
export interface ImageLimits {
  maxBytes: number;
  maxPixels: number;
}

/** 64 MiB and 40 megapixels: far above any training image, far below what would exhaust memory. */
export const DEFAULT_IMAGE_LIMITS: ImageLimits = { maxBytes: 64 * 1024 * 1024, maxPixels: 40_000_000 };

/**
 * Decodes PNG or JPEG bytes (by signature); `source` names the image in errors. An image of more than
 * `maxPixels` pixels is refused from its header, before any decoding allocates memory for it.
 */
export function decodeImage(bytes: Uint8Array, source = 'image', maxPixels = DEFAULT_IMAGE_LIMITS.maxPixels): RgbImage {
  const isPng = bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47;
  const isJpeg = bytes[0] === 0xff && bytes[1] === 0xd8;
  const tooLarge = (width: number, height: number) =>
    new ImageError(`${source}: ${width}×${height} is ${(width * height / 1e6).toFixed(1)} megapixels, over the limit of ${(maxPixels / 1e6).toFixed(1)}`);
  try {
    if (isPng) {
      if (bytes.length >= 24) {
        const header = new DataView(bytes.buffer, bytes.byteOffset + 16, 8);
        const [width, height] = [header.getUint32(0), header.getUint32(4)];
        if (width * height > maxPixels) throw tooLarge(width, height);
      }
      return pngToRgb(decodePng(bytes));
    }
    if (isJpeg) {
      const size = jpegSize(bytes);
      if (size && size[0] * size[1] > maxPixels) throw tooLarge(size[0], size[1]);
      const decoded = decodeJpeg(bytes);
      if (decoded) return { width: decoded.width, height: decoded.height, data: Float32Array.from(decoded.rgb) };
      // CMYK and YCCK (4 components), which clip/jpeg.ts leaves aside: jpeg-js's conversion.
      const img = jpeg.decode(bytes, {
        useTArray: true,
        formatAsRGBA: true,
        maxResolutionInMP: maxPixels / 1e6,
        maxMemoryUsageInMB: Math.ceil((maxPixels * 8) / 1e6) + 64,
      });
      return fromRgba(img.width, img.height, img.data);
    }
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(`${source}: cannot decode (${(e as Error).message})`);
  }
  throw new ImageError(`${source}: not a PNG or JPEG file (unrecognised signature)`);
}

/** [width, height] from a JPEG's first start-of-frame marker, or null when none is found. */
function jpegSize(bytes: Uint8Array): [number, number] | null {
  let at = 2;
  while (at + 9 < bytes.length) {
    if (bytes[at] !== 0xff) return null;
    const marker = bytes[at + 1];
    const length = (bytes[at + 2] << 8) | bytes[at + 3];
    // SOF0…SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return [(bytes[at + 7] << 8) | bytes[at + 8], (bytes[at + 5] << 8) | bytes[at + 6]];
    }
    at += 2 + length;
  }
  return null;
}

/** Encodes an RGB image (values rounded and clamped to 0…255) as PNG bytes. */
export function encodePng(img: RgbImage): Uint8Array {
  const data = Uint8Array.from(img.data, (v) => Math.round(Math.min(255, Math.max(0, v))));
  return encodePngBytes({ width: img.width, height: img.height, data, channels: 3, depth: 8 });
}

/** CLIP's normalisation of a channel value v in [0, 255]: (v / 255 − mean[c]) / std[c]. */
export const normalizeValue = (v: number, c: number): number => (v / 255 - CLIP_MEAN[c]) / CLIP_STD[c];

/** Writes an n×n RGB image normalised into CHW [3, n, n] at `offset` of `out`. */
export function normalizeInto(img: RgbImage, out: Float32Array, offset = 0): void {
  const n2 = img.width * img.height;
  for (let p = 0; p < n2; p++) for (let c = 0; c < 3; c++) out[offset + c * n2 + p] = normalizeValue(img.data[3 * p + c], c);
}

/** The RGB image (values in [0, 255]) of a normalised CHW [3, height, width] image at `offset` of `chw`. */
export function denormalize(chw: Float32Array, width: number, height: number, offset = 0): RgbImage {
  const n2 = width * height;
  const data = new Float32Array(n2 * 3);
  for (let p = 0; p < n2; p++) for (let c = 0; c < 3; c++) data[3 * p + c] = 255 * (chw[offset + c * n2 + p] * CLIP_STD[c] + CLIP_MEAN[c]);
  return { width, height, data };
}

/** The bicubic convolution kernel with a = −0.5 (PIL, Keys 1981). */
export function cubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

// PIL's fixed point for 8-bit images (Resample.c): weights scaled by 2^22, sums rounded by adding half a unit.
const PRECISION_BITS = 22;
const ONE = 2 ** PRECISION_BITS;

/**
 * Per output index: the first input index and the weights in PIL's fixed point (Resample.c's
 * precompute_coeffs, then normalize_coeffs_8bpc: normalised in float64, then each rounded half away from zero).
 */
function coefficients(inSize: number, outSize: number): { start: number; weights: Int32Array }[] {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale;
  return Array.from({ length: outSize }, (_, i) => {
    const center = (i + 0.5) * scale;
    // C's (int) truncates toward zero; negative starts are clamped to 0 either way.
    const start = Math.max(0, Math.trunc(center - support + 0.5));
    const end = Math.min(inSize, Math.trunc(center + support + 0.5));
    const float = new Float64Array(end - start);
    let total = 0;
    for (let j = start; j < end; j++) total += float[j - start] = cubic((j - center + 0.5) / filterScale);
    const weights = new Int32Array(float.length);
    for (let k = 0; k < float.length; k++) {
      const w = total !== 0 ? float[k] / total : float[k];
      weights[k] = Math.trunc(w < 0 ? -0.5 + w * ONE : 0.5 + w * ONE);
    }
    return { start, weights };
  });
}

/** A fixed-point sum back to 0…255 (PIL's clip8: an arithmetic shift, then clamped). */
const clip8 = (sum: number): number => Math.min(255, Math.max(0, Math.floor(sum / ONE)));

/**
 * One separable pass of PIL's resampling along x (`horizontal`) or y on 8-bit values, rounding to 0…255 as
 * PIL does after every pass.
 */
function resamplePass(src: Uint8Array, width: number, height: number, outSize: number, horizontal: boolean): Uint8Array {
  const [outW, outH] = horizontal ? [outSize, height] : [width, outSize];
  const coeffs = coefficients(horizontal ? width : height, outSize);
  const out = new Uint8Array(outW * outH * 3);
  // Neighbouring input samples along the pass are 3 apart horizontally, a row apart vertically.
  const step = horizontal ? 3 : width * 3;
  for (let y = 0; y < outH; y++)
    for (let x = 0; x < outW; x++) {
      const { start, weights } = coeffs[horizontal ? x : y];
      const base = horizontal ? (y * width + start) * 3 : (start * width + x) * 3;
      for (let c = 0; c < 3; c++) {
        let sum = ONE / 2;
        for (let k = 0; k < weights.length; k++) sum += weights[k] * src[base + k * step + c];
        out[(y * outW + x) * 3 + c] = clip8(sum);
      }
    }
  return out;
}

/**
 * Bicubic resize to width × height, exactly as PIL's `Image.resize(size, BICUBIC)` on an RGB image (what
 * OpenAI's and Hugging Face's preprocessing call): input values rounded to 8 bits, a horizontal pass then a
 * vertical one, each skipped when that side keeps its size, each rounding to 0…255.
 */
export function resizeBicubic(img: RgbImage, width: number, height: number): RgbImage {
  let data: Uint8Array = Uint8Array.from(img.data, (v) => Math.round(Math.min(255, Math.max(0, v))));
  if (width !== img.width) data = resamplePass(data, img.width, img.height, width, true);
  if (height !== img.height) data = resamplePass(data, width, img.height, height, false);
  return { width, height, data: Float32Array.from(data) };
}

/** Python's round(): halves go to the even neighbour (torchvision's CenterCrop offsets use it). */
const roundHalfEven = (x: number): number => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/**
 * The first two steps of OpenAI's transform for resolution n, as torchvision does them on a PIL image: resize
 * the shorter side to n (the longer to ⌊n·long/short⌋) with PIL's bicubic filter, then centre-crop n×n.
 */
export function resizeCenterCrop(img: RgbImage, n: number): RgbImage {
  if (img.width < 1 || img.height < 1) throw new ImageError(`preprocess: empty image (${img.width}×${img.height})`);
  const short = Math.min(img.width, img.height);
  const long = Math.max(img.width, img.height);
  const scaledLong = Math.floor((n * long) / short);
  const [w, h] = img.width <= img.height ? [n, scaledLong] : [scaledLong, n];
  const resized = resizeBicubic(img, w, h);
  const top = roundHalfEven((h - n) / 2);
  const left = roundHalfEven((w - n) / 2);
  const data = new Float32Array(3 * n * n);
  for (let y = 0; y < n; y++) data.set(resized.data.subarray(((y + top) * w + left) * 3, ((y + top) * w + left + n) * 3), y * n * 3);
  return { width: n, height: n, data };
}

/**
 * OpenAI's transform for resolution n: resizeCenterCrop, then (v/255 − mean)/std per channel. Returns
 * CHW [3, n, n].
 */
export function preprocess(img: RgbImage, n: number): Float32Array {
  const out = new Float32Array(3 * n * n);
  normalizeInto(resizeCenterCrop(img, n), out);
  return out;
}

/**
 * RandomResizedCrop as the paper trains (scale 0.9–1.0 of the area, aspect ratio 3/4–4/3), resized to n×n
 * with the same bicubic filter, normalised, CHW. `random` supplies the draws (seeded by the caller).
 */
export function randomResizedCrop(img: RgbImage, n: number, random: () => number, [minScale, maxScale] = [0.9, 1]): Float32Array {
  const area = img.width * img.height;
  let [w, h, x, y] = [img.width, img.height, 0, 0];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (minScale + (maxScale - minScale) * random());
    const ratio = Math.exp(Math.log(3 / 4) + (Math.log(4 / 3) - Math.log(3 / 4)) * random());
    const cw = Math.round(Math.sqrt(target * ratio));
    const ch = Math.round(Math.sqrt(target / ratio));
    if (cw > 0 && ch > 0 && cw <= img.width && ch <= img.height) {
      [w, h] = [cw, ch];
      x = Math.floor(random() * (img.width - cw + 1));
      y = Math.floor(random() * (img.height - ch + 1));
      break;
    }
  }
  const crop = new Float32Array(w * h * 3);
  for (let r = 0; r < h; r++) crop.set(img.data.subarray(((y + r) * img.width + x) * 3, ((y + r) * img.width + x + w) * 3), r * w * 3);
  const resized = resizeBicubic({ width: w, height: h, data: crop }, n, n);
  const out = new Float32Array(3 * n * n);
  normalizeInto(resized, out);
  return out;
}
