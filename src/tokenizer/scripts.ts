// Unicode scripts of characters, as the BPE trainer's piece rules need them (sentencepiece's
// IsValidSentencePiece: a piece may not mix scripts). Taken from the JS engine's Unicode tables
// (\p{Script=...}); sentencepiece ships its own, older table, so characters whose script changed
// between Unicode versions may differ (none in common IP text).

// Most frequent first: a character is tested against these in order.
const SCRIPT_NAMES = [
  'Latin', 'Han', 'Common', 'Inherited', 'Hiragana', 'Katakana', 'Greek', 'Cyrillic', 'Hangul', 'Arabic',
  'Hebrew', 'Bopomofo', 'Thai', 'Devanagari', 'Armenian', 'Georgian', 'Ethiopic', 'Bengali', 'Tamil', 'Telugu',
  'Kannada', 'Malayalam', 'Gujarati', 'Gurmukhi', 'Oriya', 'Sinhala', 'Khmer', 'Lao', 'Myanmar', 'Tibetan',
  'Mongolian', 'Yi', 'Syriac', 'Thaana', 'Cherokee', 'Canadian_Aboriginal', 'Runic', 'Ogham', 'Braille', 'Coptic',
  'Glagolitic', 'Tifinagh', 'Nko', 'Vai', 'Javanese', 'Balinese', 'Sundanese', 'Tagalog', 'Hanunoo', 'Buhid',
  'Tagbanwa', 'Buginese', 'Tai_Le', 'New_Tai_Lue', 'Tai_Tham', 'Tai_Viet', 'Limbu', 'Lepcha', 'Ol_Chiki', 'Saurashtra',
  'Kayah_Li', 'Rejang', 'Cham', 'Meetei_Mayek', 'Bamum', 'Lisu', 'Samaritan', 'Mandaic', 'Batak', 'Chakma',
  'Sharada', 'Takri', 'Miao', 'Adlam', 'Ahom', 'Anatolian_Hieroglyphs', 'Avestan', 'Bassa_Vah', 'Bhaiksuki', 'Brahmi',
  'Carian', 'Caucasian_Albanian', 'Chorasmian', 'Cuneiform', 'Cypriot', 'Cypro_Minoan', 'Deseret', 'Dives_Akuru',
  'Dogra', 'Duployan', 'Egyptian_Hieroglyphs', 'Elbasan', 'Elymaic', 'Gothic', 'Grantha', 'Gunjala_Gondi',
  'Hanifi_Rohingya', 'Hatran', 'Imperial_Aramaic', 'Inscriptional_Pahlavi', 'Inscriptional_Parthian', 'Kaithi',
  'Kawi', 'Kharoshthi', 'Khitan_Small_Script', 'Khojki', 'Khudawadi', 'Linear_A', 'Linear_B', 'Lycian', 'Lydian',
  'Mahajani', 'Makasar', 'Manichaean', 'Marchen', 'Masaram_Gondi', 'Medefaidrin', 'Mende_Kikakui',
  'Meroitic_Cursive', 'Meroitic_Hieroglyphs', 'Modi', 'Mro', 'Multani', 'Nabataean', 'Nag_Mundari', 'Nandinagari',
  'Newa', 'Nushu', 'Nyiakeng_Puachue_Hmong', 'Old_Hungarian', 'Old_Italic', 'Old_North_Arabian', 'Old_Permic',
  'Old_Persian', 'Old_Sogdian', 'Old_South_Arabian', 'Old_Turkic', 'Old_Uyghur', 'Osage', 'Osmanya', 'Pahawh_Hmong',
  'Palmyrene', 'Pau_Cin_Hau', 'Phags_Pa', 'Phoenician', 'Psalter_Pahlavi', 'Shavian', 'Siddham', 'SignWriting',
  'Sogdian', 'Sora_Sompeng', 'Soyombo', 'Syloti_Nagri', 'Tangsa', 'Tangut', 'Tirhuta', 'Toto', 'Ugaritic', 'Vithkuqi',
  'Wancho', 'Warang_Citi', 'Yezidi', 'Zanabazar_Square',
];

let compiled: { name: string; re: RegExp }[] | null = null;

function scripts(): { name: string; re: RegExp }[] {
  if (!compiled) {
    compiled = [];
    for (const name of SCRIPT_NAMES) {
      try {
        compiled.push({ name, re: new RegExp(`^\\p{Script=${name}}$`, 'u') });
      } catch {
        // A script newer than this engine's Unicode tables: its characters read as Common.
      }
    }
  }
  return compiled;
}

/** The Unicode script of a code point ('Common' for unassigned ones, as sentencepiece does). */
export function scriptOf(cp: number): string {
  const ch = String.fromCodePoint(cp);
  for (const { name, re } of scripts()) if (re.test(ch)) return name;
  return 'Common';
}

/** sentencepiece's decimal numbers: ASCII and fullwidth digits. */
function isDecimalDigit(cp: number): boolean {
  return (cp >= 0x30 && cp <= 0x39) || (cp >= 0xff10 && cp <= 0xff19);
}

export const SCRIPT_ANY = -1;
export const SCRIPT_INHERITED = -2;

/**
 * Script codes for the trainer's piece rules, with sentencepiece's foldings: Hiragana, Katakana
 * and U+30FC count as Han; combining marks (Inherited) take the previous character's script;
 * decimal digits (ASCII and fullwidth) match anything when splitByNumber is off.
 */
export function scriptCodes(cps: ArrayLike<number>, splitByNumber: boolean): Int32Array {
  const ids = new Map<string, number>();
  const out = new Int32Array(cps.length);
  for (let i = 0; i < cps.length; i++) {
    const cp = cps[i]!;
    if (!splitByNumber && isDecimalDigit(cp)) {
      out[i] = SCRIPT_ANY;
      continue;
    }
    let s = scriptOf(cp);
    if (s === 'Hiragana' || s === 'Katakana' || cp === 0x30fc) s = 'Han';
    if (s === 'Inherited') {
      out[i] = SCRIPT_INHERITED;
      continue;
    }
    let id = ids.get(s);
    if (id === undefined) ids.set(s, (id = ids.size));
    out[i] = id;
  }
  return out;
}
