// Parsers of numeric command-line flags, shared by the commands (commander's argParser): a bad
// value is commander's InvalidArgumentError naming the flag and what it must be.
import { InvalidArgumentError } from 'commander';

/** An integer >= min; `name` is the flag, in the error. */
export function intArg(name: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

/** A number that passes `ok`; `what` says what it must be ("a number >= 0"). */
export function numberArg(name: string, ok: (x: number) => boolean, what: string) {
  return (v: string): number => {
    const x = Number(v);
    if (v.trim() === '' || !ok(x)) throw new InvalidArgumentError(`${name} must be ${what}`);
    return x;
  };
}

/** A whole number >= 1 (run sizes, counts). */
export function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got "${v}"`);
  return n;
}
