// Moved to src/text/bpe-encoder.ts.
// TODO(lead): remove when src/data imports src/text
export * from '../text/bpe-encoder.js';
