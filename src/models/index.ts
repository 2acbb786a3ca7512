// Models: configs and presets, the LLaMA decoder, and Hugging Face checkpoint formats.
export * from './config.js';
export { preset, presetNames, type Preset } from './presets.js';
export { LlamaForCausalLM, LlamaModel, packDocuments, type PackedBatch, type PackedArrays, type LlamaOptions } from './llama.js';
export {
  SafetensorsFile, readSafetensors, writeSafetensors, safetensorsContent, writeFileAtomic, type SafeDType, type WriteDType, type TensorEntry,
  type WriteOptions,
} from './safetensors.js';
export {
  savePretrained, loadPretrained, loadWeights, readConfig, resizeVocabulary, SINGLE_FILE, INDEX_FILE,
  type SaveOptions, type LoadOptions, type ResizeOptions,
} from './pretrained.js';
