/**
 * Loads test/corpus/messages.json (see README.md) and the message schema with the ajv settings the
 * schema is meant for, so the corpus test and the fuzz test judge documents the same way.
 */
import { readFileSync } from 'node:fs';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

export interface CorpusCase {
  name: string;
  /** The verdict the decoder gives, and the schema too unless `schemaValid` says otherwise. */
  valid: boolean;
  /** Only with `rule`: 'size' (the document size limit) or 'depth' (payload nesting), which a schema cannot state. */
  schemaValid?: boolean;
  rule?: 'size' | 'depth';
  /** The document is `base` with these top-level fields set... */
  patch?: Record<string, unknown>;
  /** ...and these removed. */
  remove?: string[];
  /** Or the document is this text, `$0`, `$1`... replaced by `fill[i][0]` repeated `fill[i][1]` times. */
  text?: string;
  fill?: [string, number][];
}

interface Corpus {
  base: Record<string, unknown>;
  cases: CorpusCase[];
}

export const corpus = JSON.parse(readFileSync(new URL('./messages.json', import.meta.url), 'utf8')) as Corpus;

/** The wire text of a case. */
export function caseText(c: CorpusCase): string {
  if (c.text !== undefined) {
    return c.text.replace(/\$(\d)/g, (_, i: string) => {
      const [unit, times] = c.fill![Number(i)]!;
      return unit.repeat(times);
    });
  }
  const doc: Record<string, unknown> = { ...corpus.base, ...c.patch };
  for (const key of c.remove ?? []) delete doc[key];
  return JSON.stringify(doc);
}

const schema = JSON.parse(readFileSync(new URL('../../schema/message.schema.json', import.meta.url), 'utf8')) as object;
// ajv's CJS default export under NodeNext: the class may sit on `.default`.
const AjvClass = ((Ajv2020 as unknown as { default?: unknown }).default ?? Ajv2020) as typeof Ajv2020.default;
const addFormatsFn = ((addFormats as unknown as { default?: unknown }).default ?? addFormats) as typeof addFormats.default;
// strictNumbers: a JSON number that parses as Infinity (1e400) is no number (JSON has none).
const ajv = new AjvClass({ strict: true, allErrors: false, strictNumbers: true });
addFormatsFn(ajv);
export const validateSchema = ajv.compile(schema);

/** The schema's verdict on a wire text: text that is not JSON is no document. */
export function schemaAccepts(text: string): boolean {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return false;
  }
  return validateSchema(doc) === true;
}
