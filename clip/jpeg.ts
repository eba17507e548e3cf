// A JPEG decoder that gives the pixels libjpeg-turbo gives with its defaults, as PIL decodes for OpenAI's
// preprocessing: Huffman-coded baseline, extended and progressive 8-bit frames; the islow integer IDCT
// (jidctint.c, its range-limit table included); "fancy" triangle-filter chroma upsampling (jdsample.c: h2v1,
// h1v2, h2v2; box replication for other integer factors); fixed-point YCbCr → RGB (jdcolor.c). Browser-safe.
// Arithmetic-coded, lossless, hierarchical and 12-bit JPEGs are refused by name; 4-component (CMYK/YCCK)
// frames are left to the caller (`null`).

export class JpegError extends Error {
  override name = 'JpegError';
}

/** Zig-zag position → natural (row-major) position in an 8×8 block. */
const NATURAL_ORDER = Int32Array.from([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
  35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]);

/** A canonical Huffman table: an 8-bit lookahead table for short codes, libjpeg's maxcode/valptr for the rest. */
interface Huffman {
  lookup: Int32Array; // (length << 8) | value, or 0 for codes longer than 8 bits
  maxcode: Int32Array; // per length 1…16: the largest code of that length, −1 if none (index 17: sentinel)
  valptr: Int32Array; // per length: index in values of its first code, minus that code
  values: Uint8Array;
}

function buildHuffman(counts: Uint8Array, values: Uint8Array): Huffman {
  const lookup = new Int32Array(256);
  const maxcode = new Int32Array(18).fill(-1);
  const valptr = new Int32Array(17);
  let code = 0;
  let k = 0;
  for (let length = 1; length <= 16; length++) {
    valptr[length] = k - code;
    for (let i = 0; i < counts[length - 1]; i++, k++, code++) {
      if (length <= 8) for (let fill = code << (8 - length), n = 0; n < 1 << (8 - length); n++) lookup[fill + n] = (length << 8) | values[k];
    }
    if (counts[length - 1]) maxcode[length] = code - 1;
    code <<= 1;
  }
  maxcode[17] = 0x7fffffff;
  return { lookup, maxcode, valptr, values };
}

interface Component {
  id: number;
  h: number;
  v: number;
  quantId: number;
  quant: Int32Array | null; // latched at the first scan that includes the component, as libjpeg does
  blocksPerLine: number; // allocated (MCU-padded)
  blocksPerColumn: number;
  coefficients: Int16Array;
  width: number; // samples actually covered (libjpeg's downsampled_width/height)
  height: number;
  dcPred: number;
  dcTable: Huffman | null;
  acTable: Huffman | null;
}

/** The entropy-coded bits of one scan: byte-stuffing undone; a marker inside the data reads as zero bits (libjpeg). */
class BitReader {
  acc = 0;
  bits = 0;
  constructor(private readonly data: Uint8Array, public at: number) {}
  private fill(): void {
    while (this.bits <= 24) {
      let byte = 0;
      if (this.at >= this.data.length) throw new JpegError('the data ends inside a scan (truncated?)');
      if (this.data[this.at] === 0xff) {
        const next = this.data[this.at + 1];
        if (next === 0x00) {
          byte = 0xff;
          this.at += 2;
        } else if (next === 0xff) this.at++; // fill bytes before a marker
        // a marker: leave it for the caller and feed zeros
      } else byte = this.data[this.at++];
      this.acc = (this.acc << 8) | byte;
      this.bits += 8;
    }
  }
  bitsOf(n: number): number {
    if (n === 0) return 0;
    if (this.bits < n) this.fill();
    this.bits -= n;
    return (this.acc >>> this.bits) & ((1 << n) - 1);
  }
  bit(): number {
    return this.bitsOf(1);
  }
  /** n bits as a signed coefficient (the JPEG "EXTEND" of a magnitude category). */
  extend(n: number): number {
    if (n === 0) return 0;
    const v = this.bitsOf(n);
    return v < 1 << (n - 1) ? v - (1 << n) + 1 : v;
  }
  decode(table: Huffman): number {
    if (this.bits < 16) this.fill();
    const entry = table.lookup[(this.acc >>> (this.bits - 8)) & 0xff];
    if (entry) {
      this.bits -= entry >> 8;
      return entry & 0xff;
    }
    let code = this.bitsOf(8);
    let length = 8;
    while (code > table.maxcode[length]) {
      code = (code << 1) | this.bit();
      if (++length > 16) throw new JpegError('corrupt Huffman code in the scan data');
    }
    return table.values[(table.valptr[length] + code) & 0xff];
  }
  /** Drops the bits left in the byte buffer and skips the RSTn marker that ends a restart interval. */
  restart(): void {
    this.acc = 0;
    this.bits = 0;
    while (this.at + 1 < this.data.length && !(this.data[this.at] === 0xff && this.data[this.at + 1] >= 0xd0 && this.data[this.at + 1] <= 0xd7)) this.at++;
    this.at += 2;
  }
}

// ---- islow IDCT (jidctint.c) ---------------------------------------------------------------------------------
const CONST_BITS = 13;
const PASS1_BITS = 2;
// FIX(c) = round(c · 2^13) of the constants jidctint.c names FIX_0_298631336 …
const [F0_298, F0_390, F0_541, F0_765, F0_899, F1_175] = [2446, 3196, 4433, 6270, 7373, 9633];
const [F1_501, F1_847, F1_961, F2_053, F2_562, F3_072] = [12299, 15137, 16069, 16819, 20995, 25172];
/** libjpeg's post-IDCT range limit: centre at 128, clamp, and wrap far outliers as its 1024-entry table does. */
function rangeLimit(v: number): number {
  const i = v & 1023;
  return i < 128 ? i + 128 : i < 512 ? 255 : i < 896 ? 0 : i - 896;
}

/** The islow IDCT's butterfly on 8 values (a column of dequantized coefficients, or a row of pass 1's output). */
function butterfly(
  i0: number, i1: number, i2: number, i3: number, i4: number, i5: number, i6: number, i7: number,
  out: Float64Array, at: number, step: number, shift: number,
): void {
  const z1 = (i2 + i6) * F0_541;
  const tmp2 = z1 - i6 * F1_847;
  const tmp3 = z1 + i2 * F0_765;
  const tmp0 = (i0 + i4) * 2 ** CONST_BITS;
  const tmp1 = (i0 - i4) * 2 ** CONST_BITS;
  const tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
  const z5 = (i7 + i3 + i5 + i1) * F1_175;
  const o1 = (i7 + i1) * -F0_899;
  const o2 = (i5 + i3) * -F2_562;
  const o3 = (i7 + i3) * -F1_961 + z5;
  const o4 = (i5 + i1) * -F0_390 + z5;
  const t0 = i7 * F0_298 + o1 + o3;
  const t1 = i5 * F2_053 + o2 + o4;
  const t2 = i3 * F3_072 + o2 + o3;
  const t3 = i1 * F1_501 + o1 + o4;
  // DESCALE: C's (x + 2^(shift−1)) >> shift on 64-bit integers; products exceed 32 bits, so in doubles (exact).
  const half = 2 ** (shift - 1);
  const scale = 2 ** -shift;
  out[at] = Math.floor((tmp10 + t3 + half) * scale);
  out[at + 7 * step] = Math.floor((tmp10 - t3 + half) * scale);
  out[at + step] = Math.floor((tmp11 + t2 + half) * scale);
  out[at + 6 * step] = Math.floor((tmp11 - t2 + half) * scale);
  out[at + 2 * step] = Math.floor((tmp12 + t1 + half) * scale);
  out[at + 5 * step] = Math.floor((tmp12 - t1 + half) * scale);
  out[at + 3 * step] = Math.floor((tmp13 + t0 + half) * scale);
  out[at + 4 * step] = Math.floor((tmp13 - t0 + half) * scale);
}

/**
 * Dequantizes and inverse-transforms the block of `coefficients` at `offset` into `out` (row stride `stride`):
 * columns, then rows, as jidctint.c (its all-zero shortcuts give the same values, so they are not repeated).
 */
function idctIslow(
  coefficients: Int16Array, offset: number, quant: Int32Array, work: Float64Array, rows: Float64Array, out: Uint8Array, outAt: number, stride: number,
): void {
  const c = coefficients;
  const q = quant;
  const o = offset;
  for (let x = 0; x < 8; x++) {
    const at = (row: number) => c[o + row * 8 + x] * q[row * 8 + x];
    butterfly(at(0), at(1), at(2), at(3), at(4), at(5), at(6), at(7), work, x, 8, CONST_BITS - PASS1_BITS);
  }
  for (let y = 0; y < 8; y++) {
    const w = y * 8;
    butterfly(work[w], work[w + 1], work[w + 2], work[w + 3], work[w + 4], work[w + 5], work[w + 6], work[w + 7], rows, 0, 1, CONST_BITS + PASS1_BITS + 3);
    const row = outAt + y * stride;
    for (let x = 0; x < 8; x++) out[row + x] = rangeLimit(rows[x]);
  }
}

// ---- upsampling (jdsample.c) and colour (jdcolor.c) -----------------------------------------------------------

/**
 * A component's samples (`plane`, `stride` wide; `width` × `height` of them real) brought to the full
 * `outWidth` × `outHeight` grid by factors fx × fy: libjpeg-turbo's fancy upsampling for 2×1, 1×2 and 2×2 (its
 * edges replicated as its context rows and last-column cases do), box replication otherwise.
 */
function upsample(plane: Uint8Array, stride: number, width: number, height: number, fx: number, fy: number, outWidth: number, outHeight: number): Uint8Array {
  if (fx === 1 && fy === 1 && stride === outWidth) return plane.subarray(0, outWidth * outHeight);
  const out = new Uint8Array(outWidth * outHeight);
  const fancy = width > 2 || (fx === 1 && fy === 2);
  // A source row, the last real one repeated below the image and the first above it (libjpeg's context rows).
  const rowAt = (y: number) => Math.min(Math.max(y, 0), height - 1) * stride;
  const sums = new Int32Array(width);
  for (let oy = 0; oy < outHeight; oy++) {
    const y = Math.floor(oy / fy);
    const near = rowAt(y);
    // For 2× vertical, the further row: above for even output rows, below for odd ones.
    const far = rowAt(oy % 2 === 0 ? y - 1 : y + 1);
    const o = oy * outWidth;
    if (fancy && fx === 2 && fy === 2) {
      for (let x = 0; x < width; x++) sums[x] = 3 * plane[near + x] + plane[far + x];
      for (let ox = 0; ox < outWidth; ox++) {
        const x = ox >> 1;
        const here = sums[x];
        if ((ox & 1) === 0) out[o + ox] = x === 0 ? (here * 4 + 8) >> 4 : (here * 3 + sums[x - 1] + 8) >> 4;
        else out[o + ox] = x === width - 1 ? (here * 4 + 7) >> 4 : (here * 3 + sums[x + 1] + 7) >> 4;
      }
    } else if (fancy && fx === 2 && fy === 1) {
      for (let ox = 0; ox < outWidth; ox++) {
        const x = ox >> 1;
        const here = plane[near + x];
        if ((ox & 1) === 0) out[o + ox] = x === 0 ? here : (here * 3 + plane[near + x - 1] + 1) >> 2;
        else out[o + ox] = x === width - 1 ? here : (here * 3 + plane[near + x + 1] + 2) >> 2;
      }
    } else if (fancy && fx === 1 && fy === 2) {
      const bias = oy % 2 === 0 ? 1 : 2;
      for (let ox = 0; ox < outWidth; ox++) out[o + ox] = (3 * plane[near + ox] + plane[far + ox] + bias) >> 2;
    } else {
      for (let ox = 0; ox < outWidth; ox++) out[o + ox] = plane[near + Math.min(Math.floor(ox / fx), width - 1)];
    }
  }
  return out;
}

// jdcolor.c's tables: 16-bit fixed point, rounded.
const FIX = (x: number) => Math.floor(x * 65536 + 0.5);
const CR_R = Int32Array.from({ length: 256 }, (_, i) => (FIX(1.402) * (i - 128) + 32768) >> 16);
const CB_B = Int32Array.from({ length: 256 }, (_, i) => (FIX(1.772) * (i - 128) + 32768) >> 16);
const CR_G = Int32Array.from({ length: 256 }, (_, i) => -FIX(0.71414) * (i - 128));
const CB_G = Int32Array.from({ length: 256 }, (_, i) => -FIX(0.34414) * (i - 128) + 32768);
const clamp8 = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : v);

export interface DecodedJpeg {
  width: number;
  height: number;
  /** RGB, 3 bytes per pixel, row-major. */
  rgb: Uint8Array;
}

/**
 * Decodes a JPEG as libjpeg-turbo does by default (see the top of this file). Returns null for 4-component
 * (CMYK/YCCK) images; throws JpegError naming what is unsupported or damaged.
 */
export function decodeJpeg(data: Uint8Array): DecodedJpeg | null {
  const u16 = (at: number) => (data[at] << 8) | data[at + 1];
  const quantTables: (Int32Array | undefined)[] = [];
  const dcTables: (Huffman | undefined)[] = [];
  const acTables: (Huffman | undefined)[] = [];
  let components: Component[] = [];
  let [width, height, maxH, maxV] = [0, 0, 1, 1];
  let progressive = false;
  let restartInterval = 0;
  let [jfif, adobeTransform] = [false, -1];
  let at = 2;
  let frameSeen = false;
  let sawEnd = false;
  while (!sawEnd) {
    // Markers may be preceded by fill bytes (0xFF); anything else between segments is damage.
    while (at < data.length && data[at] === 0xff && data[at + 1] === 0xff) at++;
    if (at + 1 >= data.length) throw new JpegError('the data ends before the end-of-image marker (truncated?)');
    if (data[at] !== 0xff) throw new JpegError(`expected a marker at byte ${at}`);
    const marker = data[at + 1];
    at += 2;
    if (marker === 0xd9) break; // EOI
    if (marker >= 0xd0 && marker <= 0xd7) continue; // a stray RSTn
    if (at + 2 > data.length) throw new JpegError('the data ends inside a marker segment (truncated?)');
    const length = u16(at);
    const end = at + length;
    if (length < 2 || end > data.length) throw new JpegError(`marker 0x${marker.toString(16)} at byte ${at - 2} runs past the end of the data (truncated?)`);
    const body = at + 2;
    switch (marker) {
      case 0xe0:
        if (length >= 7 && String.fromCharCode(...data.subarray(body, body + 5)) === 'JFIF\0') jfif = true;
        break;
      case 0xee:
        if (length >= 14 && String.fromCharCode(...data.subarray(body, body + 5)) === 'Adobe') adobeTransform = data[body + 11];
        break;
      case 0xdb: // DQT
        for (let p = body; p < end; ) {
          const precision = data[p] >> 4;
          const table = new Int32Array(64);
          for (let k = 0; k < 64; k++) table[NATURAL_ORDER[k]] = precision ? u16(p + 1 + 2 * k) : data[p + 1 + k];
          quantTables[data[p] & 15] = table;
          p += 1 + 64 * (precision ? 2 : 1);
        }
        break;
      case 0xc4: // DHT
        for (let p = body; p < end; ) {
          const counts = data.subarray(p + 1, p + 17);
          const total = counts.reduce((a, b) => a + b, 0);
          const table = buildHuffman(counts, data.subarray(p + 17, p + 17 + total));
          (data[p] >> 4 ? acTables : dcTables)[data[p] & 15] = table;
          p += 17 + total;
        }
        break;
      case 0xdd: // DRI
        restartInterval = u16(body);
        break;
      case 0xc0: case 0xc1: case 0xc2: { // SOF0 baseline, SOF1 extended, SOF2 progressive (Huffman)
        if (frameSeen) throw new JpegError('more than one frame (hierarchical JPEG) is not supported');
        frameSeen = true;
        progressive = marker === 0xc2;
        if (data[body] !== 8) throw new JpegError(`${data[body]}-bit samples are not supported (only 8-bit)`);
        height = u16(body + 1);
        width = u16(body + 3);
        const count = data[body + 5];
        if (width === 0 || height === 0) throw new JpegError(`invalid image size ${width}×${height}`);
        if (count === 4) return null;
        if (count !== 1 && count !== 3) throw new JpegError(`${count} colour components are not supported`);
        for (let i = 0; i < count; i++) {
          const p = body + 6 + 3 * i;
          const [h, v] = [data[p + 1] >> 4, data[p + 1] & 15];
          if (h < 1 || h > 4 || v < 1 || v > 4) throw new JpegError(`invalid sampling factors ${h}×${v}`);
          components.push({
            id: data[p], h, v, quantId: data[p + 2], quant: null, blocksPerLine: 0, blocksPerColumn: 0, coefficients: new Int16Array(0),
            width: 0, height: 0, dcPred: 0, dcTable: null, acTable: null,
          });
        }
        if (count === 1) components[0].h = components[0].v = 1; // a single component is never subsampled
        maxH = Math.max(...components.map((c) => c.h));
        maxV = Math.max(...components.map((c) => c.v));
        const mcusPerLine = Math.ceil(width / (8 * maxH));
        const mcusPerColumn = Math.ceil(height / (8 * maxV));
        for (const c of components) {
          if (maxH % c.h || maxV % c.v) throw new JpegError(`fractional sampling factors (${c.h}×${c.v} of ${maxH}×${maxV}) are not supported`);
          c.width = Math.ceil((width * c.h) / maxH);
          c.height = Math.ceil((height * c.v) / maxV);
          c.blocksPerLine = mcusPerLine * c.h;
          c.blocksPerColumn = mcusPerColumn * c.v;
          c.coefficients = new Int16Array(c.blocksPerLine * c.blocksPerColumn * 64);
        }
        break;
      }
      case 0xc3: case 0xc5: case 0xc6: case 0xc7: case 0xc9: case 0xca: case 0xcb: case 0xcd: case 0xce: case 0xcf:
        throw new JpegError(
          `${marker === 0xc3 ? 'lossless' : marker >= 0xc9 ? 'arithmetic-coded' : 'hierarchical'} JPEG (SOF${marker - 0xc0}) is not supported`,
        );
      case 0xda: { // SOS
        if (!frameSeen) throw new JpegError('a scan before the frame header');
        const count = data[body];
        const scan = Array.from({ length: count }, (_, i) => {
          const c = components.find((comp) => comp.id === data[body + 1 + 2 * i]);
          if (!c) throw new JpegError(`a scan names component ${data[body + 1 + 2 * i]}, which the frame lacks`);
          c.dcTable = dcTables[data[body + 2 + 2 * i] >> 4] ?? null;
          c.acTable = acTables[data[body + 2 + 2 * i] & 15] ?? null;
          if (!c.quant) {
            const q = quantTables[c.quantId];
            if (!q) throw new JpegError(`component ${c.id} uses quantization table ${c.quantId}, which is not defined`);
            c.quant = q.slice();
          }
          return c;
        });
        const p = body + 1 + 2 * count;
        const [ss, se, ah, al] = [data[p], data[p + 1], data[p + 2] >> 4, data[p + 2] & 15];
        const [mcusPerLine, mcusPerColumn] = [Math.ceil(width / (8 * maxH)), Math.ceil(height / (8 * maxV))];
        at = decodeScan(data, end, scan, { progressive, ss, se, ah, al, restartInterval, mcusPerLine, mcusPerColumn });
        continue;
      }
      default:
        if (marker === 0xd8) throw new JpegError(`a second start-of-image marker at byte ${at - 2}`);
    }
    at = end;
  }
  if (!frameSeen) throw new JpegError('no frame header (SOF) before the end of the image');
  const planes = components.map((c) => {
    if (!c.quant) throw new JpegError(`component ${c.id} has no scan`);
    const stride = c.blocksPerLine * 8;
    const plane = new Uint8Array(stride * c.blocksPerColumn * 8);
    const [work, rows] = [new Float64Array(64), new Float64Array(8)];
    for (let by = 0; by < c.blocksPerColumn; by++)
      for (let bx = 0; bx < c.blocksPerLine; bx++) {
        idctIslow(c.coefficients, (by * c.blocksPerLine + bx) * 64, c.quant, work, rows, plane, by * 8 * stride + bx * 8, stride);
      }
    return upsample(plane, stride, c.width, c.height, maxH / c.h, maxV / c.v, width, height);
  });
  const rgb = new Uint8Array(width * height * 3);
  if (planes.length === 1) {
    for (let i = 0; i < width * height; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = planes[0][i];
    return { width, height, rgb };
  }
  // libjpeg's default colour space for 3 components: YCbCr, unless an Adobe marker says RGB (transform 0) or,
  // with neither JFIF nor Adobe marker, the component ids spell 'R', 'G', 'B'.
  const isRgb = !jfif && (adobeTransform === 0 || (adobeTransform < 0 && components[0].id === 0x52 && components[1].id === 0x47 && components[2].id === 0x42));
  const [y, cb, cr] = planes;
  for (let i = 0; i < width * height; i++) {
    if (isRgb) {
      rgb[3 * i] = y[i];
      rgb[3 * i + 1] = cb[i];
      rgb[3 * i + 2] = cr[i];
      continue;
    }
    rgb[3 * i] = clamp8(y[i] + CR_R[cr[i]]);
    rgb[3 * i + 1] = clamp8(y[i] + ((CB_G[cb[i]] + CR_G[cr[i]]) >> 16));
    rgb[3 * i + 2] = clamp8(y[i] + CB_B[cb[i]]);
  }
  return { width, height, rgb };
}

interface ScanParams {
  progressive: boolean;
  ss: number;
  se: number;
  ah: number;
  al: number;
  restartInterval: number;
  mcusPerLine: number;
  mcusPerColumn: number;
}

/** Decodes one scan's entropy-coded data starting at `start`; returns where the data after it begins. */
function decodeScan(data: Uint8Array, start: number, scan: Component[], p: ScanParams): number {
  const reader = new BitReader(data, start);
  let eobrun = 0;
  const needTable = (t: Huffman | null, which: string, c: Component): Huffman => {
    if (!t) throw new JpegError(`component ${c.id} uses a ${which} Huffman table that is not defined`);
    return t;
  };
  const decodeBlock = (c: Component, offset: number) => {
    const block = c.coefficients;
    if (!p.progressive) {
      const dc = needTable(c.dcTable, 'DC', c);
      const ac = needTable(c.acTable, 'AC', c);
      c.dcPred += reader.extend(reader.decode(dc));
      block[offset] = c.dcPred;
      for (let k = 1; k < 64; ) {
        const rs = reader.decode(ac);
        const [r, s] = [rs >> 4, rs & 15];
        if (s === 0) {
          if (r < 15) break;
          k += 16;
          continue;
        }
        k += r;
        if (k > 63) throw new JpegError('corrupt scan data (coefficient index past 63)');
        block[offset + NATURAL_ORDER[k++]] = reader.extend(s);
      }
      return;
    }
    if (p.ss === 0) {
      // DC scans: first pass sets the (shifted) value, refinements add one bit.
      if (p.ah === 0) {
        c.dcPred += reader.extend(reader.decode(needTable(c.dcTable, 'DC', c)));
        block[offset] = c.dcPred * (1 << p.al);
      } else if (reader.bit()) block[offset] |= 1 << p.al;
      return;
    }
    const ac = needTable(c.acTable, 'AC', c);
    if (p.ah === 0) {
      if (eobrun > 0) {
        eobrun--;
        return;
      }
      for (let k = p.ss; k <= p.se; ) {
        const rs = reader.decode(ac);
        const [r, s] = [rs >> 4, rs & 15];
        if (s === 0) {
          if (r < 15) {
            eobrun = (1 << r) - 1 + reader.bitsOf(r);
            break;
          }
          k += 16;
          continue;
        }
        k += r;
        if (k > 63) throw new JpegError('corrupt scan data (coefficient index past 63)');
        block[offset + NATURAL_ORDER[k++]] = reader.extend(s) * (1 << p.al);
      }
      return;
    }
    // AC refinement (jdphuff.c decode_mcu_AC_refine).
    const p1 = 1 << p.al;
    const m1 = -1 << p.al;
    const refine = (z: number) => {
      if (reader.bit() && (block[z] & p1) === 0) block[z] += block[z] >= 0 ? p1 : m1;
    };
    let k = p.ss;
    if (eobrun === 0) {
      for (; k <= p.se; k++) {
        const rs = reader.decode(ac);
        let r = rs >> 4;
        let s = rs & 15;
        if (s) {
          if (s !== 1) throw new JpegError('corrupt scan data (refinement magnitude other than 1)');
          s = reader.bit() ? p1 : m1;
        } else if (r !== 15) {
          eobrun = (1 << r) + reader.bitsOf(r);
          break;
        }
        do {
          const z = offset + NATURAL_ORDER[k];
          if (block[z] !== 0) refine(z);
          else if (--r < 0) break;
          k++;
        } while (k <= p.se);
        if (s) {
          if (k > 63) throw new JpegError('corrupt scan data (coefficient index past 63)');
          block[offset + NATURAL_ORDER[k]] = s;
        }
      }
    }
    if (eobrun > 0) {
      for (; k <= p.se; k++) {
        const z = offset + NATURAL_ORDER[k];
        if (block[z] !== 0) refine(z);
      }
      eobrun--;
    }
  };

  const single = scan.length === 1;
  const c0 = scan[0];
  // A single-component scan covers only the blocks holding real samples, one block per MCU.
  const [perLine, perColumn] = single ? [Math.ceil(c0.width / 8), Math.ceil(c0.height / 8)] : [p.mcusPerLine, p.mcusPerColumn];
  const total = perLine * perColumn;
  for (let mcu = 0; mcu < total; mcu++) {
    if (p.restartInterval && mcu > 0 && mcu % p.restartInterval === 0) {
      reader.restart();
      eobrun = 0;
      for (const c of scan) c.dcPred = 0;
    }
    const [mx, my] = [mcu % perLine, Math.floor(mcu / perLine)];
    if (single) decodeBlock(c0, (my * c0.blocksPerLine + mx) * 64);
    else
      for (const c of scan)
        for (let v = 0; v < c.v; v++) for (let h = 0; h < c.h; h++) decodeBlock(c, ((my * c.v + v) * c.blocksPerLine + mx * c.h + h) * 64);
  }
  for (const c of scan) c.dcPred = 0;
  // Bytes the reader fetched ahead but did not use belong to this scan; the next marker follows them.
  let at = reader.at;
  const endsScan = (i: number) => data[i] === 0xff && data[i + 1] !== 0x00 && data[i + 1] !== 0xff && !(data[i + 1] >= 0xd0 && data[i + 1] <= 0xd7);
  while (at + 1 < data.length && !endsScan(at)) at++;
  return at;
}
