// The JSON files under keys/ hold private keys and secrets. A file damaged by hand must stop
// the start with one line that says which file, never with JSON.parse's own message: V8 quotes
// the text around the fault, which may be part of a key.
import { readFileSync } from 'node:fs';
import { StartupError } from '../config/startup-errors.ts';

/** A file under keys/ that cannot be used; its message names the file, never its content. */
export class KeyFileError extends StartupError {}

/** The parsed content of a key file (the caller checks its shape). */
export function readKeyFile(path: string): unknown {
  const text = readFileSync(path, 'utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new KeyFileError(`${path}: not valid JSON`);
  }
}
