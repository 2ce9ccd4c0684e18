/**
 * Reading the sources folder: the one place the research and verification agents open a source
 * file. A file is read only when it is a regular file whose real path (symlinks resolved) lies
 * inside the folder's real path, when it is no larger than the size limit, and when it is text
 * (UTF-8 without NUL bytes). Anything else is skipped with a reason that names the file, so a
 * symlink cannot make an agent read `/etc/passwd`, a 600 MB log cannot exhaust memory, and a
 * binary file is not indexed as prose.
 */
import { open, realpath, stat } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';

/** Default size limit of one source file: 8 MiB (notes are kilobytes; a bigger file is rarely prose). */
export const DEFAULT_MAX_SOURCE_BYTES = 8 * 1024 * 1024;

/** How many leading bytes are sniffed for NUL bytes. */
const SNIFF_BYTES = 8192;

/** A source file that was not read, and why. */
export interface SkippedSource {
  /** Path relative to the sources folder, `/`-separated. */
  source: string;
  /** Why it was skipped, e.g. `is 600.0 MB, over the 8.0 MB limit for a source file`. */
  reason: string;
}

/** Options shared by everything that reads sources. */
export interface SourceReadOptions {
  /** Largest file read, in bytes (default `DEFAULT_MAX_SOURCE_BYTES`). */
  maxBytes?: number;
  /** Stops reading between files when aborted (throws the signal's reason). */
  signal?: AbortSignal;
}

/** The outcome of reading one source: its text, or why it was skipped. */
export type SourceRead = { text: string } | { skipped: string };

function megabytes(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/** True when `child` is `root` itself or lies under it (both absolute, resolved). */
export function isInside(root: string, child: string): boolean {
  const rel = relative(root, child);
  return rel === '' || (!rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel));
}

/** The real path of the sources folder (symlinks in its own path resolved), for `readSource`. */
export async function sourcesRoot(dir: string): Promise<string> {
  return realpath(resolve(dir));
}

/**
 * Reads the source at `path` (relative to `root`, the folder's real path from `sourcesRoot`).
 * Never throws for a file it cannot or will not read: it says why in `skipped`.
 */
export async function readSource(root: string, path: string, options: SourceReadOptions = {}): Promise<SourceRead> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_SOURCE_BYTES;
  const full = resolve(root, path);
  if (!isInside(root, full) || full === root) return { skipped: 'lies outside the sources folder' };
  let real: string;
  try {
    real = await realpath(full);
  } catch {
    return { skipped: 'does not exist' };
  }
  if (!isInside(root, real)) return { skipped: 'is a link to a file outside the sources folder' };
  const info = await stat(real).catch(() => null);
  if (!info?.isFile()) return { skipped: 'is not a regular file' };
  if (info.size > maxBytes) {
    return { skipped: `is ${megabytes(info.size)}, over the ${megabytes(maxBytes)} limit for a source file` };
  }
  const handle = await open(real, 'r').catch(() => null);
  if (!handle) return { skipped: 'cannot be opened' };
  let bytes: Buffer;
  try {
    bytes = await handle.readFile();
  } finally {
    await handle.close();
  }
  // The file may have grown between stat and read.
  if (bytes.length > maxBytes) return { skipped: `is over the ${megabytes(maxBytes)} limit for a source file` };
  const head = bytes.subarray(0, SNIFF_BYTES);
  if (head.includes(0)) return { skipped: 'is not text (it holds NUL bytes)' };
  try {
    return { text: new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes) };
  } catch {
    return { skipped: 'is not text (it is not valid UTF-8)' };
  }
}
