// The native layer: the addon's loader, its generated types and the device registry. Internal to
// the package (not exported from its root): src/tensor and src/text stand on it.
export * from './loader.js';
export * from './devices.js';
