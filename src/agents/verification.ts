/** The verification agent: scores a document and lists its concrete problems. */
import { readFile } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';
import { type Agent, type AgentContext, defineAgent } from '../bus/agent.js';
import { type Message, MessageType } from '../message.js';
import { parseDocument } from './markdown.js';
import { type VerificationResult, parseVerificationTask } from './protocol.js';
import { type SourceLines, verifyDocument } from './verify.js';

/**
 * Reads the files a document's references name, relative to `sourcesDir`: each file's lines, or
 * null when it does not exist or its path leaves the directory (`../`, absolute paths).
 */
export async function readCitedSources(sourcesDir: string, content: string): Promise<SourceLines> {
  const root = resolve(sourcesDir);
  const out = new Map<string, string[] | null>();
  for (const ref of parseDocument(content).references) {
    if (out.has(ref.source)) continue;
    const full = resolve(root, ref.source);
    const rel = relative(root, full);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
      out.set(ref.source, null);
      continue;
    }
    const text = await readFile(full, 'utf8').catch(() => null);
    out.set(ref.source, text === null ? null : text.replace(/\r\n?/gu, '\n').split('\n'));
  }
  return out;
}

/**
 * The verification agent. Its TASK payload is a `VerificationTask`; it answers a
 * `VerificationResult`. With `sourcesDir`, every reference is checked against the file on disk;
 * without it, against the passages in the task.
 */
export function createVerificationAgent(options: { sourcesDir?: string; name?: string } = {}): Agent<VerificationResult | undefined> {
  return defineAgent({
    name: options.name ?? 'verification',
    async handleMessage(msg: Message, ctx: AgentContext): Promise<VerificationResult | undefined> {
      if (msg.type !== MessageType.TASK) return undefined;
      const task = parseVerificationTask(msg.payload);
      const sources = options.sourcesDir === undefined ? undefined : await readCitedSources(options.sourcesDir, task.content);
      const result = verifyDocument(task, sources);
      ctx?.log?.debug({ score: result.score, problems: result.problems.length }, 'verification: document scored');
      return result;
    },
  });
}
