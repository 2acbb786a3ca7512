// Models: configs and presets, the LLaMA decoder, and Hugging Face checkpoint formats.
export * from './config.js';
export { preset, presetNames, type Preset } from './presets.js';
export { LlamaForCausalLM, LlamaModel, DecodeWorkspace, packDocuments, type PackedBatch, type PackedArrays, type LlamaOptions, type PagedStep } from './llama.js';
export {
  SafetensorsFile, readSafetensors, writeSafetensors, safetensorsContent, writeFileAtomic, type SafeDType, type WriteDType, type TensorEntry,
  type WriteOptions,
} from './safetensors.js';
export {
  savePretrained, loadPretrained, loadWeights, readConfig, resizeVocabulary, SINGLE_FILE, INDEX_FILE,
  CONFIG_FILE, GENERATION_CONFIG_FILE, TOKENIZER_MODEL_FILE, TOKENIZER_SPEC_FILE, folderFiles, holdsModel, readFolderTokenizer,
  readSpecialIds, specialIdsOf,
  type SaveOptions, type LoadOptions, type ResizeOptions, type FolderTokenizer, type FolderFile, type FolderFilesOptions, type RecordedTokenizer,
} from './pretrained.js';
export {
  saveLora, loadLora, readLoraConfig, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, PEFT_PREFIX, type PeftLoraConfig, type SaveLoraOptions,
} from './peft.js';
export { MAX_TENSOR_ELEMENTS, checkModelFits, checkTensorFits, parameterShapes } from './limits.js';
