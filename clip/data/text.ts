// Caption helpers shared by the built-in datasets.

/** The phrase with its indefinite article: "a red circle", "an orange ring", "an eight", "an ankle boot". */
export function withArticle(phrase: string): string {
  return `${/^[aeiou]/i.test(phrase) ? 'an' : 'a'} ${phrase}`;
}
