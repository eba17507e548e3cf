// Images on disk (Node-only): reading PNG/JPEG files and writing PNGs; decoding and encoding are
// clip/preprocess.ts, on bytes.
import { writeFileSync } from 'node:fs';
import { readBytes } from '../../nn/io/files.ts';
import { ImageError, decodeImage, encodePng, type RgbImage } from '../preprocess.ts';

/** Decodes the PNG or JPEG file at `path`; errors name the path. */
export function readImage(path: string): RgbImage {
  return decodeImage(readBytes(path, ImageError), path);
}

/** Writes an RGB image (values in [0, 255]) as a PNG file. */
export function writePng(path: string, img: RgbImage): void {
  writeFileSync(path, encodePng(img));
}
