/**
 * The wire corpus (test/corpus/messages.json) through Python: the schema with Python's
 * `jsonschema` (Python's `re` dialect, not ECMAScript's) and the reference Python client's decoder
 * must give every case the verdict ajv and Concord's decoder give it (test/message.corpus.test.ts).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { corpus } from '../corpus/corpus.js';
import { CLIENT_DIR, pythonAvailable, runPython } from './python.js';

const up = pythonAvailable();
const CORPUS = fileURLToPath(new URL('../corpus/messages.json', import.meta.url));
const SCHEMA = fileURLToPath(new URL('../../schema/message.schema.json', import.meta.url));

describe.runIf(up)('the wire corpus in Python: jsonschema and concord_client agree with ajv and the decoder', () => {
  it('gives every case its verdict', { timeout: 120_000 }, async () => {
    const { stdout } = await runPython([CLIENT_DIR + 'tests/corpus_check.py', CORPUS, SCHEMA], {}, 110_000);
    const verdicts = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { name: string; schema: boolean; client: boolean; error: string | null });
    expect(verdicts.map((v) => v.name)).toEqual(corpus.cases.map((c) => c.name));
    const wrong = corpus.cases.flatMap((c, i) => {
      const v = verdicts[i]!;
      const out: string[] = [];
      if (v.schema !== (c.schemaValid ?? c.valid))
        out.push(`${c.name}: Python jsonschema says ${v.schema}, expected ${c.schemaValid ?? c.valid}`);
      if (v.client !== c.valid) out.push(`${c.name}: concord_client says ${v.client} (${v.error ?? 'accepted'}), expected ${c.valid}`);
      return out;
    });
    expect(wrong).toEqual([]);
  });

  it('the Python client ships the same schema file', () => {
    expect(readFileSync(CLIENT_DIR + 'concord_client/message.schema.json', 'utf8')).toBe(readFileSync(SCHEMA, 'utf8'));
  });
});

describe.runIf(up)("the Python client's own unit tests (unittest)", () => {
  it('pass', { timeout: 60_000 }, async () => {
    const { stderr } = await runPython(['-m', 'unittest', 'discover', '-s', 'tests', '-t', '.'], {}, 50_000);
    expect(stderr).toMatch(/Ran \d+ tests[\s\S]*\nOK/);
  });
});
