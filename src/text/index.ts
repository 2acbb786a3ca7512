// Text kernels for src/data and src/tokenizer: MinHash signatures, filter statistics, the native
// BPE trainer and encoder, and the byte batches they take.
export * from './batch.js';
export * from './minhash.js';
export * from './stats.js';
export * from './bpe-encoder.js';
