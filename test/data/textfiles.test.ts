// The plain-text reader of `patentgpt pretrain --data` walks folders as data prep does: links
// followed (loops skipped), hidden files and pipes skipped and listed (a pipe is never opened),
// gzip read whatever the name, other compressed files listed as unreadable.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { readTextDocuments } from '../../src/data/textfiles.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-textfiles-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('readTextDocuments', () => {
  it('follows links, skips hidden files, loops and pipes with a reason, reads gzip by its magic bytes', async () => {
    const d = path.join(root, 'corpus');
    fs.mkdirSync(path.join(d, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(root, 'outside.txt'), 'linked text');
    fs.symlinkSync(path.join(root, 'outside.txt'), path.join(d, 'link.txt'));
    fs.symlinkSync(d, path.join(d, 'sub', 'up'));
    fs.writeFileSync(path.join(d, '.hidden.txt'), 'hidden');
    fs.writeFileSync(path.join(d, 'packed.md'), zlib.gzipSync('gzipped text'));
    fs.writeFileSync(path.join(d, 'named.txt.gz'), zlib.gzipSync('gz suffix'));
    fs.writeFileSync(path.join(d, 'z.txt'), Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0]));
    execFileSync('mkfifo', [path.join(d, 'pipe.txt')]);
    const texts: string[] = [];
    const rep = await readTextDocuments([d], (doc) => void texts.push(doc.text));
    expect(texts).toEqual(['linked text', 'gz suffix', 'gzipped text']);
    expect(rep.skippedPaths.map((s) => [path.relative(d, s.path), s.reason])).toEqual([['.hidden.txt', 'hidden'], ['pipe.txt', 'not-a-regular-file'], ['sub/up', 'symlink-loop']]);
    expect(rep.unreadable).toEqual([{ file: path.join(d, 'z.txt'), reason: 'zstd-compressed: decompress it first' }]);
  }, 30_000);
});
