/** The verification agent: scores a document and lists its concrete problems. */
import { resolve } from 'node:path';
import { type Agent, type AgentContext, defineAgent } from '../bus/agent.js';
import { type Message, MessageType } from '../message.js';
import { parseDocument } from './markdown.js';
import { type VerificationResult, parseVerificationTask } from './payloads.js';
import { type SourceReadOptions, readSource, sourcesRoot } from './sources.js';
import { type SourceLines, verifyDocument } from './checks.js';

/**
 * Reads the files a document's references name, relative to `sourcesDir`, through the same
 * `readSource` the research agent uses: each file's lines, or null when it is not a regular text
 * file whose real path is inside the directory (`../`, absolute paths, a symlink leading out, a
 * file over the size limit, binary data).
 */
export async function readCitedSources(sourcesDir: string, content: string, options: SourceReadOptions = {}): Promise<SourceLines> {
  const root = await sourcesRoot(sourcesDir).catch(() => resolve(sourcesDir));
  const out = new Map<string, string[] | null>();
  for (const ref of parseDocument(content).references) {
    if (out.has(ref.source)) continue;
    const read = await readSource(root, ref.source, options);
    out.set(ref.source, 'text' in read ? read.text.replace(/\r\n?/gu, '\n').split('\n') : null);
  }
  return out;
}

/**
 * The verification agent. Its TASK payload is a `VerificationTask`; it answers a
 * `VerificationResult`. With `sourcesDir`, every reference is checked against the file on disk;
 * without it, against the passages in the task.
 */
export function createVerificationAgent(
  options: { sourcesDir?: string; name?: string; maxSourceBytes?: number } = {},
): Agent<VerificationResult | undefined> {
  return defineAgent({
    name: options.name ?? 'verification',
    async handleMessage(msg: Message, ctx: AgentContext): Promise<VerificationResult | undefined> {
      if (msg.type !== MessageType.TASK) return undefined;
      const task = parseVerificationTask(msg.payload);
      const sources =
        options.sourcesDir === undefined
          ? undefined
          : await readCitedSources(
              options.sourcesDir,
              task.content,
              options.maxSourceBytes !== undefined ? { maxBytes: options.maxSourceBytes } : {},
            );
      const result = verifyDocument(task, sources);
      ctx?.log?.debug({ score: result.score, problems: result.problems.length }, 'verification: document scored');
      return result;
    },
  });
}
