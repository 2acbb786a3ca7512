// complete() has one result type from Engine and ThreadedEngine (its finishReason the exported
// FinishReason, not a string | null on one side): types/completion.ts must type-check.
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

describe('FinishReason', () => {
  it('Engine and ThreadedEngine complete() share the Completion type', () => {
    const file = join(import.meta.dirname, 'types', 'completion.ts');
    const program = ts.createProgram([file], {
      strict: true, noEmit: true, skipLibCheck: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext, lib: ['lib.es2023.d.ts', 'lib.esnext.disposable.d.ts'], types: ['node'],
    });
    const errors = ts.getPreEmitDiagnostics(program).filter((d) => d.file?.fileName === file);
    expect(errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))).toEqual([]);
  }, 120_000);
});
