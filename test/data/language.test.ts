// detectLanguageCode is franc-min's answer computed faster: the two must agree on every text,
// whatever the script, length, case, digits and punctuation.
import { franc } from 'franc-min';
import { describe, expect, it } from 'vitest';
import { detectLanguageCode } from '../../src/data/language.js';
import { rng } from './rng.js';

const WORDS = [
  'the claimed invention relates to a fastening device which holds two panels together while allowing thermal expansion',
  'la invención se refiere a un dispositivo de sujeción que mantiene unidos dos paneles y permite la dilatación térmica',
  "l'invention concerne un dispositif de fixation qui maintient deux panneaux ensemble tout en permettant la dilatation",
  'die Erfindung betrifft eine Befestigungsvorrichtung die zwei Platten zusammenhält und eine Wärmeausdehnung erlaubt',
  'a invenção refere-se a um dispositivo de fixação que mantém dois painéis juntos permitindo a expansão térmica',
  "l'invenzione riguarda un dispositivo di fissaggio che tiene insieme due pannelli consentendo la dilatazione termica",
  'de uitvinding heeft betrekking op een bevestigingsinrichting die twee panelen bij elkaar houdt',
  'изобретение относится к крепежному устройству которое удерживает две панели вместе допуская тепловое расширение',
  'винахід стосується кріпильного пристрою який утримує дві панелі разом',
  'يتعلق الاختراع بجهاز تثبيت يثبت لوحين معا مع السماح بالتمدد الحراري',
  'आविष्कार एक बन्धन उपकरण से संबंधित है जो दो पैनलों को एक साथ रखता है',
  '本发明涉及一种用于连接两块面板的紧固装置 该装置允许任一面板热膨胀而不会使接头松动',
  'Η εφεύρεση αφορά μια συσκευή στερέωσης που συγκρατεί δύο πάνελ μαζί',
  '본 발명은 두 개의 패널을 함께 고정하는 체결 장치에 관한 것이다',
  'wynalazek dotyczy urządzenia mocującego które utrzymuje dwa panele razem',
].map((s) => s.split(' '));
const NOISE = ['1,234', '(a)', '—', '...', '#12', 'FIG. 3', '\t', '\n', '  ', 'µm', '°C', '%', '😀', 'X-Y'];

describe('detectLanguageCode', () => {
  it("gives franc's answer on mixed scripts, lengths and noise", () => {
    const r = rng(11);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    for (let i = 0; i < 1500; i++) {
      const langs = [pick(WORDS), pick(WORDS), pick(WORDS)];
      const len = Math.floor(r() ** 2 * 400);
      const parts: string[] = [];
      for (let k = 0; k < len; k++) {
        const w = r() < 0.1 ? pick(NOISE) : pick(r() < 0.8 ? langs[0]! : pick(langs));
        parts.push(r() < 0.1 ? w.toUpperCase() : w);
      }
      const text = parts.join(r() < 0.9 ? ' ' : '');
      const minLength = pick([0, 10, 20]);
      expect(detectLanguageCode(text, minLength), text.slice(0, 80)).toBe(franc(text, { minLength }));
    }
    // random letters: many languages at close distances, where an off-by-one would show
    const letters = 'abcdeéfghijklmnopqrstuvwxyzäöüñç    ';
    for (let i = 0; i < 1500; i++) {
      let text = '';
      const len = 20 + Math.floor(r() * 200);
      for (let k = 0; k < len; k++) text += pick([...letters]);
      expect(detectLanguageCode(text, 20), text).toBe(franc(text, { minLength: 20 }));
    }
    for (const t of ['', 'abc', '12345 67890 12345 67890', '!!!! ???? ....', 'a'.repeat(3000), 'ab'.repeat(30)])
      for (const minLength of [0, 10, 20]) expect(detectLanguageCode(t, minLength), t.slice(0, 20)).toBe(franc(t, { minLength }));
  });
});
