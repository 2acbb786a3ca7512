// Moved to src/text/minhash.ts.
// TODO(lead): remove when src/data imports src/text
export * from '../text/minhash.js';
