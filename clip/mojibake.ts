// ftfy's mojibake repair, the part of ftfy.fix_text (called by OpenAI's basic_clean) that undoes text decoded
// with the wrong codec: "cafÃ©" → "café", "â€œquotesâ€\x9d" → "“quotes”", Cyrillic, Greek, Central European,
// Mac Roman and DOS code page mix-ups, mojibake of mojibake. ftfy 6's fix_encoding, step for step: a line that
// its "badness" heuristic flags is re-encoded in each single-byte encoding it could have been decoded with, in
// ftfy's order, and the first whose bytes are valid UTF-8 wins (after restore_byte_a0: a space that stood for
// byte 0xA0 inside a sequence); else Latin-1 is read as Windows-1252; else C1 controls become Windows-1252's
// characters. Repeated until nothing changes, line by line, as ftfy fixes segments. Not reproduced (measured
// against ftfy 6.3.1 in test/tokenizer.test.ts): decode_inconsistent_utf8 (mojibake embedded in otherwise
// correct text), replace_lossy_sequences (sequences holding U+FFFD) and the CESU-8 / Java variants of UTF-8.

// ftfy's character categories (badness.MOJIBAKE_CATEGORIES): the ~400 characters that occur in UTF-8 mojibake.
const CATEGORIES = {
  common: '\u00a0\u00ad\u00b7\u00b4\u2013\u2014\u2015\u2026\u2019',
  c1: '\u0080-\u009f',
  bad: '\u00a6\u00a4\u00a8\u00ac\u00af\u00b8ƒˆˇ˘˛˜\u2020\u2021\u2030⌐◊�\u00aa\u00ba',
  law: '\u00b6\u00a7',
  currency: '\u00a2\u00a3\u00a5₧€',
  start_punctuation: '\u00a1\u00ab\u00bf\u00a9΄΅\u2018\u201a\u201c\u201e\u2022\u2039\uf8ff',
  end_punctuation: '\u00ae\u00bb˝\u201d\u203a™',
  numeric: '\u00b2\u00b3\u00b9\u00b1\u00bc\u00bd\u00be\u00d7\u00b5\u00f7⁄∂∆∏∑√∞∩∫≈≠≡≤≥№',
  kaomoji: '\u00d2-\u00d6\u00d9-\u00dc\u00f2-\u00f6\u00f8-\u00fcŐŌŪŲ\u00b0',
  upper_accented: '\u00c0-\u00d1\u00d8\u00dc\u00ddĂĀĄĆČĎĐĘĚĒĖĞĢİĪĶĹĽŁĻŃŇŅŒŘŚŞŠŢŤŮŰŸŹŻŽҐ',
  lower_accented: '\u00df\u00e0-\u00f1ăąāćčďđęěēėğģįīķĺľłļœŕśşšť\u00fcźżžґﬁﬂ',
  upper_common: '\u00deΑ-ΩΆΈΉΊΌΎΏΪΫЁ-Я',
  lower_common: 'α-ωάέήίΰа-џ',
  box: '│┌┐┘├┤┬┼═-╬▀▄█▌▐░▒▓',
};
type Category = keyof typeof CATEGORIES;
const any = (...names: (Category | string)[]) => `[${names.map((n) => (n in CATEGORIES ? CATEGORIES[n as Category] : n)).join('')}]`;

// ftfy's BADNESS_RE: juxtapositions of those characters that are far likelier to be mojibake than meant.
const BADNESS = new RegExp(
  [
    any('c1'),
    any('bad', 'lower_accented', 'upper_accented', 'box', 'start_punctuation', 'end_punctuation', 'currency', 'numeric', 'law') + any('bad'),
    '[a-zA-Z]' + any('lower_common', 'upper_common') + any('bad'),
    any('bad') + any('lower_accented', 'upper_accented', 'box', 'start_punctuation', 'end_punctuation', 'currency', 'numeric', 'law'),
    any('lower_accented', 'lower_common', 'box', 'end_punctuation', 'currency', 'numeric') + any('upper_accented'),
    any('box', 'end_punctuation', 'currency', 'numeric') + any('lower_accented'),
    any('lower_accented', 'box', 'end_punctuation') + any('currency'),
    '\\s' + any('upper_accented') + any('currency'),
    any('upper_accented', 'box') + any('numeric', 'law'),
    any('lower_accented', 'upper_accented', 'box', 'currency', 'end_punctuation') + any('start_punctuation') + any('numeric'),
    any('lower_accented', 'upper_accented', 'currency', 'numeric', 'box', 'law') + any('end_punctuation') + any('start_punctuation'),
    any('currency', 'numeric', 'box') + any('start_punctuation'),
    '[a-z]' + any('upper_accented') + any('start_punctuation', 'currency'),
    any('box') + any('kaomoji'),
    any('lower_accented', 'upper_accented', 'currency', 'numeric', 'start_punctuation', 'end_punctuation', 'law') + any('box'),
    any('box') + any('end_punctuation'),
    any('lower_accented', 'upper_accented') + any('start_punctuation', 'end_punctuation') + '[\\p{L}\\p{N}_]',
    '[Œœ][^A-Za-z]', // the ligature œ not followed by an unaccented Latin letter
    any('upper_accented') + '°',
    '[ÂÃÎÐ]' + any('€œŠš¢£Ÿž\u00a0\u00ad®©°·»', 'start_punctuation', 'end_punctuation', '–—´'),
    '×[²³]',
    // Windows-1252 mojibake of Arabic: four characters, since the 'common' ones are included
    (any('ØÙ') + any('common', 'currency', 'bad', 'numeric', 'start_punctuation', 'ŸŠ®°µ»')).repeat(2),
    'à[²µ¹¼½¾]', // Windows-1252 starts of South Asian scripts
    '√[±∂†≠®™´≤≥¥µø]', // Mac Roman
    '≈[°¢]',
    '‚Ä[ìîïòôúùû†°¢π]',
    '‚[âó][àä°ê]',
    'вЂ', // Windows-1251 of the U+2000 range
    '[ВГРС]' + any('c1', 'bad', 'start_punctuation', 'end_punctuation', 'currency', '°µ') + '[ВГРС]',
    'ГўВЂВ.[A-Za-z ]',
    'Ã[\u00a0¡]', // Windows-1252 of à, á and U+00A0 itself
    '[a-z]\\s?[ÃÂ] ',
    '^[ÃÂ] ',
    '[a-z.,?!' + CATEGORIES.end_punctuation + ']Â' + any(' ', 'start_punctuation', 'end_punctuation'),
    'β€[™\u00a0Ά\u00ad®°]', // Windows-1253
    '[ΒΓΞΟ]' + any('c1', 'bad', 'start_punctuation', 'end_punctuation', 'currency', '°') + '[ΒΓΞΟ]',
    'ā€', // Windows-1257
  ].join('|'),
  'u',
);

/** Bytes 0x80–0xFF of ftfy's single-byte encodings (Python's codecs; "sloppy": undefined bytes as Latin-1). */
const ENCODINGS: [string, string][] = [
  ['latin-1', Array.from({ length: 128 }, (_, i) => String.fromCharCode(128 + i)).join('')],
  [
    'sloppy-windows-1252',
    '€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ\u00a0¡¢£¤¥¦§¨©ª«¬\u00ad®¯°±²³´µ¶·¸¹º»¼½¾¿' +
      'ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõö÷øùúûüýþÿ',
  ],
  [
    'sloppy-windows-1251',
    'ЂЃ‚ѓ„…†‡€‰Љ‹ЊЌЋЏђ‘’“”•–—\u0098™љ›њќћџ\u00a0ЎўЈ¤Ґ¦§Ё©Є«¬\u00ad®Ї°±Ііґµ¶·ё№є»јЅѕї' +
      'АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгдежзийклмнопрстуфхцчшщъыьэюя',
  ],
  [
    'sloppy-windows-1250',
    '€\u0081‚\u0083„…†‡\u0088‰Š‹ŚŤŽŹ\u0090‘’“”•–—\u0098™š›śťžź\u00a0ˇ˘Ł¤Ą¦§¨©Ş«¬\u00ad®Ż°±˛ł´µ¶·¸ąş»Ľ˝ľż' +
      'ŔÁÂĂÄĹĆÇČÉĘËĚÍÎĎĐŃŇÓÔŐÖ×ŘŮÚŰÜÝŢßŕáâăäĺćçčéęëěíîďđńňóôőö÷řůúűüýţ˙',
  ],
  [
    'sloppy-windows-1253',
    '€\u0081‚ƒ„…†‡\u0088‰\u008a‹\u008c\u008d\u008e\u008f\u0090‘’“”•–—\u0098™\u009a›\u009c\u009d\u009e\u009f\u00a0΅Ά£¤¥¦§¨©ª«¬\u00ad®―°±²³΄µ¶·ΈΉΊ»Ό½ΎΏ' +
      'ΐΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡÒΣΤΥΦΧΨΩΪΫάέήίΰαβγδεζηθικλμνξοπρςστυφχψωϊϋόύώÿ',
  ],
  [
    'sloppy-windows-1254',
    '€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008d\u008e\u008f\u0090‘’“”•–—˜™š›œ\u009d\u009eŸ\u00a0¡¢£¤¥¦§¨©ª«¬\u00ad®¯°±²³´µ¶·¸¹º»¼½¾¿' +
      'ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏĞÑÒÓÔÕÖ×ØÙÚÛÜİŞßàáâãäåæçèéêëìíîïğñòóôõö÷øùúûüışÿ',
  ],
  [
    'sloppy-windows-1257',
    '€\u0081‚\u0083„…†‡\u0088‰\u008a‹\u008c¨ˇ¸\u0090‘’“”•–—\u0098™\u009a›\u009c¯˛\u009f\u00a0¡¢£¤¥¦§Ø©Ŗ«¬\u00ad®Æ°±²³´µ¶·ø¹ŗ»¼½¾æ' +
      'ĄĮĀĆÄÅĘĒČÉŹĖĢĶĪĻŠŃŅÓŌÕÖ×ŲŁŚŪÜŻŽßąįāćäåęēčéźėģķīļšńņóōõö÷ųłśūüżž˙',
  ],
  [
    'iso-8859-2',
    '\u0080\u0081\u0082\u0083\u0084\u0085\u0086\u0087\u0088\u0089\u008a\u008b\u008c\u008d\u008e\u008f' +
      '\u0090\u0091\u0092\u0093\u0094\u0095\u0096\u0097\u0098\u0099\u009a\u009b\u009c\u009d\u009e\u009f' +
      '\u00a0Ą˘Ł¤ĽŚ§¨ŠŞŤŹ\u00adŽŻ°ą˛ł´ľśˇ¸šşťź˝žż' +
      'ŔÁÂĂÄĹĆÇČÉĘËĚÍÎĎĐŃŇÓÔŐÖ×ŘŮÚŰÜÝŢßŕáâăäĺćçčéęëěíîďđńňóôőö÷řůúűüýţ˙',
  ],
  [
    'macroman',
    'ÄÅÇÉÑÖÜáàâäãåçéèêëíìîïñóòôöõúùûü†°¢£§•¶ß®©™´¨≠ÆØ∞±≤≥¥µ∂∑∏π∫ªºΩæø' +
      '¿¡¬√ƒ≈∆«»…\u00a0ÀÃÕŒœ–—“”‘’÷◊ÿŸ⁄€‹›ﬁﬂ‡·‚„‰ÂÊÁËÈÍÎÏÌÓÔ\uf8ffÒÚÛÙıˆ˜¯˘˙˚¸˝˛ˇ',
  ],
  [
    'cp437',
    'ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐' +
      '└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0',
  ],
];
const TO_BYTE = ENCODINGS.map(([, chars]) => new Map([...chars].map((c, i) => [c, 128 + i])));
const WINDOWS_1252 = ENCODINGS[1][1];
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The text as bytes in one encoding (a string of code units 0–255), or null when some character is not in it.
 * ftfy's "sloppy" codecs write U+FFFD as byte 0x1A, marking where a character was already lost.
 */
function encode(text: string, table: Map<string, number>, sloppy: boolean): string | null {
  let out = '';
  for (const c of text) {
    const code = c.charCodeAt(0);
    if (code < 0x80) out += c;
    else if (sloppy && c === '\ufffd') out += '\x1a';
    else {
      const byte = table.get(c);
      if (byte === undefined) return null;
      out += String.fromCharCode(byte);
    }
  }
  return out;
}

// ftfy's byte patterns (chardata.ALTERED_UTF8_RE, fixes.A_GRAVE_WORD_RE, chardata.LOSSY_UTF8_RE, the CESU-8
// sequences of bad_codecs.utf8_variants), on byte strings.
const ALTERED_UTF8 = new RegExp(
  [
    '[\\xc2\\xc3\\xc5\\xce\\xd0\\xd9] ',
    '[\\xe2\\xe3] [\\x80-\\x84\\x86-\\x9f\\xa1-\\xbf]',
    '[\\xe0-\\xe3][\\x80-\\x84\\x86-\\x9f\\xa1-\\xbf] ',
    '\\xf0 [\\x80-\\xbf][\\x80-\\xbf]',
    '\\xf0[\\x80-\\xbf] [\\x80-\\xbf]',
    '\\xf0[\\x80-\\xbf][\\x80-\\xbf] ',
  ].join('|'),
  'g',
);
const A_GRAVE_WORD = /\xc3 (?! |quele|quela|quilo|s )/g;
const LOSSY_UTF8 = new RegExp(
  [
    '[\\xc2-\\xdf]\\x1a',
    '[\\xc2-\\xc3][?]',
    '\\xed[\\xa0-\\xaf][\\x1a?]\\xed[\\xb0-\\xbf][\\x1a?\\x80-\\xbf]',
    '\\xed[\\xa0-\\xaf][\\x1a?\\x80-\\xbf]\\xed[\\xb0-\\xbf][\\x1a?]',
    '[\\xe0-\\xef][\\x1a?][\\x1a\\x80-\\xbf]',
    '[\\xe0-\\xef][\\x1a\\x80-\\xbf][\\x1a?]',
    '[\\xf0-\\xf4][\\x1a?][\\x1a\\x80-\\xbf][\\x1a\\x80-\\xbf]',
    '[\\xf0-\\xf4][\\x1a\\x80-\\xbf][\\x1a?][\\x1a\\x80-\\xbf]',
    '[\\xf0-\\xf4][\\x1a\\x80-\\xbf][\\x1a\\x80-\\xbf][\\x1a?]',
    '\\x1a',
  ].join('|'),
  'g',
);
const CESU8 = /\xed([\xa0-\xaf])([\x80-\xbf])\xed([\xb0-\xbf])([\x80-\xbf])/g;

/** UTF-8 bytes (a byte string) decoded, with CESU-8 surrogate pairs and Java's 0xC0 0x80 for U+0000; null if invalid. */
function decodeUtf8(bytes: string): string | null {
  if (/[\xc0\xed]/.test(bytes)) {
    bytes = bytes.replace(/\xc0\x80/g, '\x00').replace(CESU8, (_, a: string, b: string, c: string, d: string) => {
      const high = ((a.charCodeAt(0) & 0x0f) << 6) | (b.charCodeAt(0) & 0x3f); // the surrogates less 0xD800 / 0xDC00
      const low = ((c.charCodeAt(0) & 0x0f) << 6) | (d.charCodeAt(0) & 0x3f);
      const cp = 0x10000 + (high << 10) + low;
      return String.fromCharCode(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    });
  }
  try {
    return utf8.decode(Uint8Array.from(bytes, (c) => c.charCodeAt(0)));
  } catch {
    return null;
  }
}

/** One step of ftfy's _fix_encoding_one_step_and_explain. */
function fixOnce(text: string): string {
  if (/^[\x00-\x7f]*$/.test(text) || !BADNESS.test(text)) return text;
  let latin1: string | null = null;
  for (let e = 0; e < ENCODINGS.length; e++) {
    const name = ENCODINGS[e][0];
    let bytes = encode(text, TO_BYTE[e], name.startsWith('sloppy'));
    if (e === 0) latin1 = bytes;
    if (bytes === null) continue;
    if (name !== 'macroman' && new RegExp(ALTERED_UTF8.source).test(bytes)) {
      bytes = bytes.replace(A_GRAVE_WORD, '\xc3\xa0 ').replace(ALTERED_UTF8, (m) => m.replace(/ /g, '\xa0'));
    }
    if (name.startsWith('sloppy')) bytes = bytes.replace(LOSSY_UTF8, '\xef\xbf\xbd');
    const decoded = decodeUtf8(bytes);
    if (decoded !== null) return decoded;
  }
  // Latin-1 that was meant as Windows-1252 (where Windows-1252 defines the byte).
  if (latin1 !== null && !/[\x81\x8d\x8f\x90\x9d]/.test(latin1)) {
    const windows = latin1.replace(/[\x80-\x9f]/g, (c) => WINDOWS_1252[c.charCodeAt(0) - 128]);
    if (windows !== text) return windows;
  }
  return text.replace(/[\u0080-\u009f]/g, (c) => WINDOWS_1252[c.charCodeAt(0) - 128]);
}

/** ftfy's fix_encoding on each line (see the top of this file). */
export function fixMojibake(text: string): string {
  return text.replace(/[^\n]*\n?/g, (line) => {
    for (let previous = ''; previous !== line; ) [previous, line] = [line, fixOnce(line)];
    return line;
  });
}
