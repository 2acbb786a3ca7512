// Moved to src/text/batch.ts.
// TODO(lead): remove when src/data imports src/text
export * from '../text/batch.js';
