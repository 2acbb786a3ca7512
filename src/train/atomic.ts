// Atomic writes for the trainer; they live in src/util so src/data (below train) can use them too.
export { writeFileAtomic, writeFileAtomicSync, writeContent, fsyncDir, sha256File, tempPathFor } from '../util/atomic.js';
export type { ByteSink, FileContent, WrittenFile } from '../util/atomic.js';
