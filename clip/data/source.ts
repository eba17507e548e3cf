// What the trainer and the evaluation need from a dataset. Examples are addressed by index, so batches are
// reproducible and a resumed run sees exactly the batches an uninterrupted one would.

/** Normalised images [count, 3, n, n] (host data) with their captions. */
export interface CaptionedImages {
  pixels: Float32Array;
  captions: string[];
}

/** Normalised images [count, 3, n, n] (host data) with class labels. */
export interface LabelledImages {
  pixels: Float32Array;
  labels: number[];
}

/** A training dataset: numbered captioned batches, held-out validation pairs, a caption corpus, its zero-shot task. */
export interface DataSource {
  /** Training examples start … start + size − 1 at resolution n. */
  batch(start: number, size: number, n: number): CaptionedImages;
  /** Pairs kept out of training, for retrieval evaluation. */
  validation(count: number, n: number): CaptionedImages;
  /** Training captions to learn a BPE vocabulary from. */
  corpus(count: number): string[];
  /** The zero-shot classification task this data comes with (none for arbitrary captions). */
  zeroShot?: ZeroShotTask;
}

/** Classes, prompt templates (clip/prompts.ts) and labelled image sets for zero-shot evaluation. */
export interface ZeroShotTask {
  classes: string[];
  templates: string[];
  /** Named sets of labelled images. */
  sets: {
    name: string;
    /** The set's images at resolution n. */
    images: (n: number) => LabelledImages;
  }[];
  /** Images for a linear probe: fitting, choosing λ, reporting. */
  probe?: (n: number) => { train: LabelledImages; validation: LabelledImages; test: LabelledImages };
}
