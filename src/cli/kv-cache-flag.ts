// --kv-cache-dtype, shared by serve, generate and chat: the element type of the engine's KV cache.
// commander refuses any other value with "argument 'x' is invalid. Allowed choices are f32, bf16, f16".
import { Option } from 'commander';
import { KV_CACHE_DTYPES } from '../tensor/index.js';

export function kvCacheDtypeOption(): Option {
  return new Option('--kv-cache-dtype <type>', 'KV cache element type: bf16 and f16 halve its bytes per token (twice the tokens in --kv-cache-mb, half the reads at long context); attention still computes in f32')
    .choices([...KV_CACHE_DTYPES])
    .default('f32');
}
