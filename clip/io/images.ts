// Images on disk (Node-only): reading PNG/JPEG files and writing PNGs; decoding and encoding are
// clip/preprocess.ts, on bytes.
import { writeFileSync } from 'node:fs';
import { readBytes } from '../../core/io/files.ts';
import { DEFAULT_IMAGE_LIMITS, ImageError, decodeImage, encodePng, type ImageLimits, type RgbImage } from '../preprocess.ts';

/** Decodes the PNG or JPEG file at `path` within `limits`; errors name the path. */
export function readImage(path: string, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): RgbImage {
  return decodeImage(readBytes(path, ImageError, limits.maxBytes), path, limits.maxPixels);
}

/** Writes an RGB image (values in [0, 255]) as a PNG file. */
export function writePng(path: string, img: RgbImage): void {
  writeFileSync(path, encodePng(img));
}
