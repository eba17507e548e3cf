// Prompts: the templates that turn a class name into a caption ("a photo of a {}."), as plain strings so a run
// can record the ones its zero-shot evaluation used (in the model's metadata) and every later zero-shot use
// of that model takes the same ones.

/** The indefinite article of a phrase: "an" before a vowel ("an orange ring", "an eight"), else "a". */
const article = (phrase: string): string => (/^[aeiou]/i.test(phrase) ? 'an' : 'a');

/** The phrase with its indefinite article: "a red circle", "an orange ring", "an ankle boot". */
export function withArticle(phrase: string): string {
  return `${article(phrase)} ${phrase}`;
}

/** A template filled in: `{}` is the class name, `{a}` its indefinite article ("{a} {}" → "an orange ring"). */
export function fillTemplate(template: string, name: string): string {
  return template.replace('{a}', article(name)).replace('{}', name);
}

/** The seven prompts OpenAI's ImageNet notebook found best as an ensemble. */
export const ENSEMBLE_TEMPLATES: readonly string[] = [
  'itap of a {}.',
  'a bad photo of the {}.',
  'a origami {}.',
  'a photo of the large {}.',
  'a {} in a video game.',
  'art of the {}.',
  'a photo of the small {}.',
];

/** The paper's single default prompt. */
export const SINGLE_TEMPLATE: readonly string[] = ['a photo of a {}.'];

/** Zero-shot classes and the templates a model was evaluated with (kept with its weights). */
export interface Prompts {
  templates: string[];
  classes: string[];
}
