/**
 * Writing and editing through a chat model. The model sees the passages with citation keys
 * (`[P3]`) and writes Markdown citing them; its keys become numbered citations and a reference
 * list built from the passages (never from anything the model wrote). A key it made up gets a
 * number with no reference, so verification fails the draft instead of trusting it.
 */
import { editDocument } from './edits.js';
import { referenceFor } from './compose.js';
import { type DocumentModel, type Reference, citationsOf, parseDocument, renderDocument } from './markdown.js';
import type { ChatMessage, ChatModel } from './model.js';
import { DEFAULT_WORDS, type EditingResult, type Passage, type WritingResult, type WritingTask } from './payloads.js';
import { CITATION_MARKER } from './text.js';

/** How a model call reports progress and stops. */
export interface ModelCallOptions {
  signal?: AbortSignal;
  onToken?: (text: string) => void;
}

/** `P1`, `P2`, ...: the key of the i-th passage (0-based). */
export const passageKey = (i: number): string => `P${i + 1}`;

const KEY_MARKER = /\s?\[((?:P\d+|\d+)(?:\s*,\s*(?:P\d+|\d+))*)\]/gu;

function materialBlock(passages: readonly Passage[]): string {
  return passages
    .map((p, i) => {
      const lines = p.line === p.endLine ? `line ${p.line}` : `lines ${p.line}-${p.endLine}`;
      const where = [p.title, p.heading && p.heading !== p.title ? `section "${p.heading}"` : undefined].filter(Boolean).join(', ');
      return `[${passageKey(i)}] ${where ? `${where}; ` : ''}${p.source}, ${lines}\n${p.text}`;
    })
    .join('\n\n');
}

const RULES = [
  'Write in Markdown. The first line is "# " and the title. Then "## Introduction", one "## " section per theme, and "## Conclusion".',
  'Every sentence that states a fact ends with the key of the passage it comes from, in square brackets, before the full stop: "Leases expire [P2]."',
  "Cite only keys from the list. Use the passage's own words as far as you can: every cited sentence is checked against its passage.",
  'Never start a paragraph with a word that points back (This, These, However, Therefore).',
  'The conclusion sums up what the sections said and cites nothing new. Do not write a References section.',
];

/** The chat messages asking for a first draft. */
export function draftMessages(task: WritingTask): ChatMessage[] {
  const words = task.words ?? DEFAULT_WORDS;
  const covers = task.requirements.length ? ` It must cover: ${task.requirements.join('; ')}.` : '';
  return [
    { role: 'system', content: `You write documents only from the passages you are given. Rules:\n- ${RULES.join('\n- ')}` },
    {
      role: 'user',
      content: `Topic: ${task.topic}.${covers} Length: about ${words} words.\n\nPassages:\n\n${materialBlock(task.passages)}`,
    },
  ];
}

/** The chat messages asking for a revision of `task.draft` against `task.feedback`. */
export function revisionMessages(task: WritingTask): ChatMessage[] {
  const draft = toKeys(task.draft ?? '', task.passages);
  const problems = (task.feedback ?? []).map((p) => `- ${p.kind}: ${p.message}`).join('\n');
  return [
    { role: 'system', content: `You revise documents written only from the passages you are given. Rules:\n- ${RULES.join('\n- ')}` },
    {
      role: 'user',
      content:
        `Fix each problem below and change nothing else. Answer with the whole revised document.\n\nProblems:\n${problems}\n\n` +
        `Document:\n\n${draft}\n\nPassages:\n\n${materialBlock(task.passages)}`,
    },
  ];
}

/** The draft with its numbered citations turned back into passage keys, References cut. */
export function toKeys(markdown: string, passages: readonly Passage[]): string {
  const doc = parseDocument(markdown);
  const keyOf = new Map<number, string>();
  for (const ref of doc.references) {
    const i = passages.findIndex((p) => p.source === ref.source && p.line <= ref.line && ref.endLine <= p.endLine);
    keyOf.set(ref.n, i >= 0 ? passageKey(i) : `${ref.n}`);
  }
  const body: DocumentModel = { ...doc, referencesHeading: null, references: [], malformedReferences: [] };
  return renderDocument(body).replace(CITATION_MARKER, (marker, list: string) => {
    const lead = marker.startsWith(' ') ? ' ' : '';
    return `${lead}[${list
      .split(',')
      .map((n) => keyOf.get(Number(n.trim())) ?? n.trim())
      .join(', ')}]`;
  });
}

/** Strips a Markdown code fence the model may have wrapped its answer in, and any References it wrote anyway. */
function cleanReply(reply: string): string {
  let text = reply.trim();
  const fenced = /^```(?:markdown|md)?\s*\n([\s\S]*?)\n```\s*$/u.exec(text);
  if (fenced) text = fenced[1] ?? '';
  const refs = /^#{1,6}\s+(references|sources|bibliography)\s*$/imu.exec(text);
  if (refs) text = text.slice(0, refs.index);
  return text.trim() + '\n';
}

/**
 * The model's Markdown as a document: passage keys numbered by first appearance with references
 * from the passages. A key that names no passage (or a bare number) gets a number of its own and
 * no reference: verification reports it as a citation with no entry in References.
 */
export function fromKeys(reply: string, passages: readonly Passage[]): { content: string; invented: string[] } {
  const text = cleanReply(reply);
  const numbers = new Map<string, number>();
  const references: Reference[] = [];
  const invented: string[] = [];
  const numberOf = (key: string): number => {
    let n = numbers.get(key);
    if (n !== undefined) return n;
    n = numbers.size + 1;
    numbers.set(key, n);
    const m = /^P(\d+)$/u.exec(key);
    const passage = m ? passages[Number(m[1]) - 1] : undefined;
    if (passage) references.push(referenceFor(passage, n));
    else invented.push(key);
    return n;
  };
  const body = text.replace(KEY_MARKER, (marker, list: string) => {
    const lead = marker.startsWith(' ') ? ' ' : '';
    return `${lead}[${[...new Set(list.split(',').map((k) => numberOf(k.trim())))].join(', ')}]`;
  });
  const doc = parseDocument(body);
  doc.referencesHeading = 'References';
  doc.references = references;
  doc.malformedReferences = [];
  return { content: renderDocument(doc), invented };
}

/** Writes a first draft, or revises `task.draft` on `task.feedback`, through `model`. */
export async function writeWithModel(task: WritingTask, model: ChatModel, options: ModelCallOptions = {}): Promise<WritingResult> {
  const revising = task.draft !== undefined && task.feedback !== undefined;
  const reply = await model.complete(revising ? revisionMessages(task) : draftMessages(task), options);
  const { content, invented } = fromKeys(reply, task.passages);
  const doc = parseDocument(content);
  const revisions = revising ? [`revised by ${model.label} on ${task.feedback?.length ?? 0} problems`] : [];
  if (invented.length) revisions.push(`${model.label} cited keys that name no passage: ${invented.join(', ')}`);
  return { content, citations: citationsOf(doc), revisions };
}

/**
 * Edits through `model` (flow and wording; every `[n]` kept with its sentence, no new facts), then
 * the deterministic editor (headings, repeats, length). The References come from the input, never
 * from the model. Returns the input unchanged, with no changes listed, when neither changed it.
 */
export async function editWithModel(
  content: string,
  model: ChatModel,
  options: { words?: number; topic?: string; requirements?: string[] } & ModelCallOptions = {},
): Promise<EditingResult> {
  const doc = parseDocument(content);
  const body = renderDocument({ ...doc, referencesHeading: null, references: [], malformedReferences: [] });
  const reply = await model.complete(
    [
      {
        role: 'system',
        content:
          'You are a copy editor. Improve flow and wording of the Markdown document you are given without adding facts. ' +
          'Keep every citation marker such as [3] on the sentence it supports, keep the headings, keep quoted wording where you can ' +
          '(cited sentences are checked against their sources), and answer with the whole document only.',
      },
      { role: 'user', content: body },
    ],
    { ...(options.signal ? { signal: options.signal } : {}), ...(options.onToken ? { onToken: options.onToken } : {}) },
  );
  const edited = parseDocument(cleanReply(reply));
  edited.referencesHeading = doc.referencesHeading ?? 'References';
  edited.references = doc.references;
  edited.malformedReferences = doc.malformedReferences;
  const byModel = renderDocument(edited);
  const changes = byModel === renderDocument(doc) ? [] : [`${model.label} edited the wording`];
  const rest = editDocument(byModel, {
    ...(options.words !== undefined ? { words: options.words } : {}),
    ...(options.topic !== undefined ? { topic: options.topic } : {}),
    ...(options.requirements !== undefined ? { requirements: options.requirements } : {}),
  });
  const result = { ...rest, changes: [...changes, ...rest.changes] };
  return result.changes.length === 0 ? { ...result, content } : result;
}
