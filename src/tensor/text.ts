// Moved to src/text/stats.ts.
// TODO(lead): remove when src/data imports src/text
export * from '../text/stats.js';
