// Compiled (not run) by finish-reason.test.ts: Engine and ThreadedEngine complete() give one
// result type, whose finishReason is the exported FinishReason.
import type { Completion, Engine, FinishReason, ThreadedEngine } from '../../../src/infer/index.js';

type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Result<E extends { complete(...args: never[]): Promise<unknown> }> = Awaited<ReturnType<E['complete']>>;

export const engineGivesCompletion: Same<Result<Engine>, Completion> = true;
export const threadedGivesCompletion: Same<Result<ThreadedEngine>, Completion> = true;
export const reasonIsFinishReason: Same<Completion['finishReason'], FinishReason> = true;
export const reasonValues: Same<FinishReason, 'stop' | 'length'> = true;
