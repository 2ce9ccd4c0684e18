/**
 * The writing agent's revisions: each criticised point acted on (repeats, citations, structure,
 * coverage, length), the rest of the draft left as it was. Facts only ever come from the passages:
 * a point no passage can answer is reported in `revisions` and left alone.
 */
import {
  type Candidate,
  type SentenceQuery,
  MAX_SENTENCES_PER_PARAGRAPH,
  Material,
  citeCandidate,
  composeDocument,
  referenceFor,
  sectionStems,
  stems,
} from './compose.js';
import { headingCase, keyStems, trimToLength } from './edits.js';
import {
  type DocumentModel,
  citationsOf,
  citedNumbers,
  cloneDocument,
  documentSentences,
  documentWords,
  isProse,
  mapSentences,
  paragraphSentences,
  parseDocument,
  remapCitations,
  renderDocument,
  renumberCitations,
} from './markdown.js';
import {
  DEFAULT_WORDS,
  type Passage,
  type Problem,
  type WritingResult,
  type WritingTask,
  isLeadPassage,
  passageContext,
} from './payloads.js';
import {
  MAX_QUOTES_PER_PASSAGE,
  SUPPORT_THRESHOLD,
  betterSection,
  sectionAffinity,
  citationNumbers,
  contentStems,
  contextWord,
  countWords,
  isRepeat,
  lengthBounds,
  sentenceKey,
  stem,
  stripCitations,
  support,
} from './text.js';

const ORDER: Record<Problem['kind'], number> = { topic: 0, repetition: 1, citation: 2, coherence: 3, structure: 4, coverage: 5, length: 6 };

/** What a revision works on. */
interface Revision {
  model: DocumentModel;
  readonly task: WritingTask;
  readonly material: Material;
  readonly notes: string[];
}

function short(sentence: string, max = 60): string {
  const s = stripCitations(sentence);
  return `"${s.length > max ? s.slice(0, max - 1) + '…' : s}"`;
}

/** The index of the section headed `heading` (-1 for the title, i.e. the lead), or undefined. */
function sectionIndex(model: DocumentModel, heading: string | undefined): number | undefined {
  if (heading === undefined) return undefined;
  const key = sentenceKey(heading);
  const i = model.sections.findIndex((s) => sentenceKey(s.heading) === key);
  if (i >= 0) return i;
  return model.title !== null && sentenceKey(model.title) === key ? -1 : undefined;
}

/** The query a section's heading stands for (the introduction is about the topic, the conclusion about everything). */
function sectionQuery(heading: string, task: WritingTask): SentenceQuery {
  const topic = stems(task.topic);
  const all = stems([task.topic, ...task.requirements].join(' '));
  const key = sentenceKey(heading);
  if (key === 'introduction' || key === '') return { primary: topic, secondary: all };
  if (key === 'conclusion') return { primary: all };
  const h = sectionStems(heading, topic);
  return { primary: h.size ? h : topic, secondary: topic };
}

/** The citation number for a passage: the existing one, or the next free number with a new reference. */
function citeNumber(model: DocumentModel, passage: Passage): number {
  const existing = model.references.find((r) => r.source === passage.source && r.line === passage.line && r.endLine === passage.endLine);
  if (existing) return existing.n;
  const n = Math.max(0, ...model.references.map((r) => r.n), ...citedNumbers(model)) + 1;
  model.references.push(referenceFor(passage, n));
  return n;
}

/** Appends a sentence to a section (-1: the lead): to its last prose paragraph if that has room, else as a new one. */
function appendSentence(model: DocumentModel, section: number, sentence: string): void {
  const paras = section < 0 ? model.lead : model.sections[section]?.paragraphs;
  if (!paras) return;
  const last = paras[paras.length - 1];
  if (last !== undefined && isProse(last) && paragraphSentences(last).length < MAX_SENTENCES_PER_PARAGRAPH) {
    paras[paras.length - 1] = `${last} ${sentence}`;
  } else {
    paras.push(sentence);
  }
}

function headingOf(model: DocumentModel, section: number): string {
  return section < 0 ? (model.title ?? 'the opening') : (model.sections[section]?.heading ?? '');
}

/** How many sentences of `section` cite reference `n`. */
function quotesOf(model: DocumentModel, section: number, n: number): number {
  return documentSentences(model).filter((s) => s.section === section && citationNumbers(s.text).includes(n)).length;
}

/**
 * Adds the best unused source sentence for `query` to `section`, cited, without quoting any
 * passage more than `MAX_QUOTES_PER_PASSAGE` times in that section. Returns it, or undefined.
 */
function addSentence(
  r: Revision,
  section: number,
  query: SentenceQuery,
  accept: (c: Candidate) => boolean = () => true,
): Candidate | undefined {
  const taken = documentSentences(r.model).map((s) => s.text);
  const heading = headingOf(r.model, section);
  const intro = section < 0 || sentenceKey(heading) === 'introduction';
  const topic = stems(r.task.topic);
  const headings = bodySections(r.model)
    .filter((i) => i >= 0)
    .map((i) => headingOf(r.model, i));
  const c = r.material.pick(query, taken, (x) => {
    if (!accept(x)) return false;
    // Only where verification would leave it: under a heading it is about; in the introduction,
    // nothing a body section is about unless it is a source's opening.
    const context = passageContext(x.passage);
    const elsewhere = betterSection(x.text, context, intro ? '' : heading, headings, topic);
    if (elsewhere !== undefined && !(intro && isLeadPassage(x.passage))) return false;
    const ref = r.model.references.find(
      (f) => f.source === x.passage.source && f.line === x.passage.line && f.endLine === x.passage.endLine,
    );
    return !ref || quotesOf(r.model, section, ref.n) < MAX_QUOTES_PER_PASSAGE;
  });
  if (!c) return undefined;
  appendSentence(r.model, section, citeCandidate(c, citeNumber(r.model, c.passage)));
  return c;
}

/** Body sections, for length fixes: all but the introduction and conclusion when there are others. */
function bodySections(model: DocumentModel): number[] {
  const all = model.sections.map((_, i) => i);
  const body = all.filter((i) => !['introduction', 'conclusion'].includes(sentenceKey(model.sections[i]?.heading ?? '')));
  return body.length ? body : all.length ? all : [-1];
}

function fixRepetition(r: Revision, problem: Problem): void {
  const kept: string[] = [];
  const target = problem.sentence;
  r.model = mapSentences(r.model, (s) => {
    const repeat = kept.some((k) => isRepeat(k, s.text)) && (target === undefined || isRepeat(target, s.text));
    if (repeat) {
      r.notes.push(`removed a repeated sentence from '${s.heading}': ${short(s.text)}`);
      return null;
    }
    kept.push(s.text);
    return s.text;
  });
}

/** Does reference `n` exist and point at a passage whose text supports `sentence`? */
function citationHolds(r: Revision, sentence: string, n: number): boolean {
  const ref = r.model.references.find((x) => x.n === n);
  const passage = ref && r.material.passageFor(ref);
  return passage !== undefined && support(sentence, passage.text) >= SUPPORT_THRESHOLD;
}

/**
 * A section quotes passage [n] too often: keep the quotes that answer the section best, drop the
 * rest, and write the freed words back from other passages. False when the section does not.
 */
function fixOverQuoting(r: Revision, section: number, n: number): boolean {
  const citing = documentSentences(r.model).filter((s) => s.section === section && citationNumbers(s.text).includes(n));
  if (citing.length <= MAX_QUOTES_PER_PASSAGE) return false;
  const heading = headingOf(r.model, section);
  const query = sectionQuery(heading, r.task);
  const relevance = (text: string): number => {
    const st = stems(stripCitations(text));
    return r.material.weight(st, query.primary) + 0.2 * r.material.weight(st, query.secondary ?? new Set());
  };
  const keep = new Set(
    [...citing]
      .sort((a, b) => relevance(b.text) - relevance(a.text) || a.paragraph - b.paragraph || a.index - b.index)
      .slice(0, MAX_QUOTES_PER_PASSAGE)
      .map((s) => `${s.paragraph}:${s.index}`),
  );
  let freed = 0;
  r.model = mapSentences(r.model, (s) => {
    if (s.section !== section || !citationNumbers(s.text).includes(n) || keep.has(`${s.paragraph}:${s.index}`)) return s.text;
    freed += countWords(s.text);
    return null;
  });
  const ref = r.model.references.find((x) => x.n === n);
  const same = (c: Candidate): boolean => !ref || c.passage.source !== ref.source || c.passage.line !== ref.line;
  let added = 0;
  const sources: string[] = [];
  while (added < freed) {
    const c = addSentence(r, section, query, same);
    if (!c) break;
    added += countWords(c.text);
    sources.push(c.passage.id);
  }
  r.notes.push(
    `'${heading}' quoted [${n}] ${citing.length} times: kept ${MAX_QUOTES_PER_PASSAGE}, ` +
      (sources.length
        ? `replaced ${freed} words with ${added} from ${[...new Set(sources)].join(', ')}`
        : `no other passage fits, ${freed} words cut`),
  );
  return true;
}

function fixCitation(r: Revision, problem: Problem): void {
  const n = problem.citation;
  const section = sectionIndex(r.model, problem.section);
  if (n !== undefined && section !== undefined && fixOverQuoting(r, section, n)) return;
  const target = problem.sentence === undefined ? undefined : sentenceKey(problem.sentence);
  let touched = false;
  const references = r.model.references;
  r.model = mapSentences(r.model, (s) => {
    const nums = citationNumbers(s.text);
    const concerned = (n === undefined || nums.includes(n)) && (target === undefined || sentenceKey(s.text) === target);
    if (!concerned || nums.length === 0) return s.text;
    touched = true;
    const broken = nums.filter((m) => (n === undefined || m === n) && !citationHolds(r, s.text, m));
    if (broken.length === 0) return s.text;
    const passage = r.material.supporting(s.text);
    if (!passage) {
      r.notes.push(`removed from '${s.heading}' a sentence no passage supports: ${short(s.text)}`);
      return null;
    }
    const to = citeNumber(r.model, passage);
    r.notes.push(`re-cited ${short(s.text)} in '${s.heading}': [${broken.join(', ')}] → [${to}] ${passage.id}`);
    return remapCitations(s.text, new Map(broken.map((m) => [m, to])));
  });
  // mapSentences copied the model before citeNumber added references to the original: keep them.
  r.model.references = references;
  if (!touched && n !== undefined && r.model.references.some((x) => x.n === n)) {
    r.model.references = r.model.references.filter((x) => x.n !== n);
    r.notes.push(`dropped reference [${n}], which nothing cites`);
  }
}

/**
 * A sentence that leans on one that is not there, or a conclusion sentence the body never said:
 * it goes. A section that strays from its heading keeps only the sentences about the heading
 * (length is restored later from material that is).
 */
function fixCoherence(r: Revision, problem: Problem): void {
  const target = problem.sentence === undefined ? undefined : sentenceKey(problem.sentence);
  if (target !== undefined) {
    const moves: { sentence: string; to: number }[] = [];
    const topic = stems(r.task.topic);
    const body = bodySections(r.model).filter((i) => i >= 0);
    const headings = body.map((i) => headingOf(r.model, i));
    // A sentence leaning on the one acted on (same source, `...around such operations`) goes with it.
    let last: { n: number | undefined; to: number | undefined; section: number; paragraph: number } | undefined;
    r.model = mapSentences(r.model, (s) => {
      const n = citationNumbers(s.text)[0];
      if (sentenceKey(s.text) !== target) {
        const follows =
          last && last.section === s.section && last.paragraph === s.paragraph && last.n === n && contextWord(s.text) !== null;
        const lead = last;
        last = undefined;
        if (!follows || !lead) return s.text;
        if (lead.to !== undefined) moves.push({ sentence: s.text, to: lead.to });
        return null;
      }
      // A sentence under the wrong heading moves to the one it is about (by verification's own rule).
      const ref = r.model.references.find((x) => x.n === n);
      const passage = ref && r.material.passageFor(ref);
      const better = passage && betterSection(s.text, passageContext(passage), s.heading, headings, topic);
      const to = better === undefined ? undefined : sectionIndex(r.model, better);
      const room = to !== undefined && ref !== undefined && quotesOf(r.model, to, ref.n) < MAX_QUOTES_PER_PASSAGE;
      const move = to !== undefined && to !== s.section && room;
      if (move) {
        moves.push({ sentence: s.text, to });
        r.notes.push(`moved ${short(s.text)} from '${s.heading}' to '${better}', which it is about`);
      } else {
        r.notes.push(`removed from '${s.heading}' ${short(s.text)}: ${problem.message.replace(/^".*?" in '.*?' /u, '')}`);
      }
      last = { n, to: move ? to : undefined, section: s.section, paragraph: s.paragraph };
      return null;
    });
    for (const m of moves) appendSentence(r.model, m.to, m.sentence);
    return;
  }
  const section = sectionIndex(r.model, problem.section);
  if (section === undefined || section < 0) {
    r.notes.push(`could not act on: ${problem.message}`);
    return;
  }
  const h = sectionStems(headingOf(r.model, section), stems(r.task.topic));
  let dropped = 0;
  r.model = mapSentences(r.model, (s) => {
    if (s.section !== section || citationNumbers(s.text).length === 0) return s.text;
    const ref = r.model.references.find((x) => x.n === citationNumbers(s.text)[0]);
    const passage = ref && r.material.passageFor(ref);
    if (sectionAffinity(s.text, passage ? passageContext(passage) : '', h) > 0) return s.text;
    dropped++;
    return null;
  });
  r.notes.push(
    `removed ${dropped} sentence${dropped === 1 ? '' : 's'} of '${headingOf(r.model, section)}' that were not about its heading`,
  );
}

function fixStructure(r: Revision, problem: Problem): void {
  const m = r.model;
  if (m.title === null) {
    m.title = headingCase(r.task.topic);
    r.notes.push(`added the title '${m.title}'`);
  }
  if (m.referencesHeading === null) {
    m.referencesHeading = 'References';
    r.notes.push('added the References heading');
  }
  if (problem.section === undefined) return;
  let i = sectionIndex(m, problem.section);
  if (i === undefined) {
    const conclusion = sectionIndex(m, 'Conclusion');
    const at = conclusion ?? m.sections.length;
    m.sections.splice(at, 0, { heading: headingCase(problem.section), level: 2, paragraphs: [] });
    i = at;
    r.notes.push(`added the section '${headingCase(problem.section)}'`);
  }
  const section = m.sections[i];
  if (!section) return;
  const cited = section.paragraphs.some((p) => citationNumbers(p).length > 0);
  if (cited) return;
  const query = sectionQuery(section.heading, r.task);
  const budget = Math.round(((r.task.words ?? DEFAULT_WORDS) * 0.65) / Math.max(1, r.task.requirements.length));
  let added = 0;
  while (added < budget) {
    const c = addSentence(r, i, query);
    if (!c) break;
    added += countWords(c.text);
  }
  if (added === 0 && section.paragraphs.length === 0) {
    // An empty heading helps no reader: leave the requirement unmet and say so.
    m.sections.splice(i, 1);
    r.notes.push(`found no passage for '${section.heading}': left it out rather than leave an empty section`);
    return;
  }
  r.notes.push(added ? `wrote ${added} cited words for '${section.heading}'` : `found no passage for '${section.heading}'`);
}

function fixCoverage(r: Revision, problem: Problem): void {
  const term = problem.term;
  if (term === undefined) {
    r.notes.push(`could not act on a coverage problem naming no term: ${problem.message}`);
    return;
  }
  const st = stem(term.toLowerCase());
  const covered = documentSentences(r.model).some(
    (s) => citationNumbers(s.text).length > 0 && contentStems(stripCitations(s.text)).includes(st),
  );
  if (covered) return;
  const all = stems([r.task.topic, ...r.task.requirements, term].join(' '));
  const taken = documentSentences(r.model).map((s) => s.text);
  const c = r.material.pick({ primary: all }, taken, (x) => x.stems.has(st));
  if (!c) {
    r.notes.push(`no passage mentions '${term}': left uncovered rather than invent it`);
    return;
  }
  // The section whose heading the sentence matches best; the problem's section or the opening one on a tie.
  let best = sectionIndex(r.model, problem.section) ?? (r.model.sections.length ? 0 : -1);
  let bestWeight = best >= 0 ? r.material.weight(c.stems, sectionQuery(headingOf(r.model, best), r.task).primary) : 0;
  r.model.sections.forEach((s, i) => {
    // The conclusion sums up the body; a new fact goes to the body.
    if (sentenceKey(s.heading) === 'conclusion') return;
    const w = r.material.weight(c.stems, sectionQuery(s.heading, r.task).primary);
    if (w > bestWeight) {
      best = i;
      bestWeight = w;
    }
  });
  appendSentence(r.model, best, citeCandidate(c, citeNumber(r.model, c.passage)));
  r.notes.push(`covered '${term}' in '${headingOf(r.model, best)}' with ${short(c.text)} (${c.passage.id})`);
}

function fixLength(r: Revision, problem: Problem): void {
  const target = problem.expected ?? r.task.words ?? DEFAULT_WORDS;
  const before = documentWords(r.model);
  if (before > lengthBounds(target).max) {
    const edit = trimToLength(r.model, target, { protect: keyStems(r.task.topic, r.task.requirements) });
    r.model = edit.model;
    r.notes.push(`shortened ${before} → ${documentWords(r.model)} words for the ${target}-word target`);
    return;
  }
  let words = before;
  // Body sections first, smallest first; then the introduction and conclusion; then any on-topic sentence.
  const all = stems([r.task.topic, ...r.task.requirements].join(' '));
  const body = bodySections(r.model);
  // Never the conclusion: it sums up the body and takes no new facts.
  const rest = [-1, ...r.model.sections.map((_, i) => i)].filter(
    (i) => !body.includes(i) && (i >= 0 || r.model.lead.length > 0) && sentenceKey(headingOf(r.model, i)) !== 'conclusion',
  );
  const sectionWords = (i: number): number =>
    (i < 0 ? r.model.lead : (r.model.sections[i]?.paragraphs ?? [])).reduce((n, p) => n + countWords(p), 0);
  for (const [pool, broad] of [
    [body, false],
    [rest, false],
    [[...body, ...rest], true],
  ] as const) {
    const exhausted = new Set<number>();
    while (words < target) {
      const open = pool.filter((i) => !exhausted.has(i)).sort((a, b) => sectionWords(a) - sectionWords(b) || a - b);
      const i = open[0];
      if (i === undefined) break;
      const query = broad ? { primary: all } : sectionQuery(headingOf(r.model, i), r.task);
      const c = addSentence(r, i, query);
      if (!c) exhausted.add(i);
      else words = documentWords(r.model);
    }
  }
  if (words !== before) r.notes.push(`lengthened ${before} → ${words} words for the ${target}-word target`);
  else if (words < lengthBounds(target).min) r.notes.push(`no unused material left to lengthen the ${words}-word draft`);
}

/**
 * Revises `task.draft` against `task.feedback`: repeats, then citations, structure, coverage and
 * length last (it depends on the others). Existing citation numbers are kept, new sources get the
 * next free number; the list is renumbered only when a removal left a gap.
 */
export function reviseDocument(task: WritingTask): WritingResult {
  const r: Revision = { model: parseDocument(task.draft ?? ''), task, material: new Material(task.passages), notes: [] };
  const feedback = [...(task.feedback ?? [])].map((p, i) => ({ p, i })).sort((a, b) => ORDER[a.p.kind] - ORDER[b.p.kind] || a.i - b.i);
  for (const { p } of feedback) {
    r.model = cloneDocument(r.model);
    if (p.kind === 'repetition') fixRepetition(r, p);
    else if (p.kind === 'citation') fixCitation(r, p);
    else if (p.kind === 'structure') fixStructure(r, p);
    else if (p.kind === 'coverage') fixCoverage(r, p);
    else if (p.kind === 'coherence') fixCoherence(r, p);
    else if (p.kind === 'topic') r.notes.push(`cannot fix by rewriting: ${p.message}`);
    else fixLength(r, p);
  }
  const cited = citedNumbers(r.model);
  const numbered = [...r.model.references.map((x) => x.n)].sort((a, b) => a - b);
  const gapless = numbered.every((n, i) => n === i + 1) && numbered.length === cited.length && cited.every((n) => numbered.includes(n));
  if (!gapless) {
    const before = r.model;
    r.model = renumberCitations(r.model);
    if (r.model !== before) r.notes.push('renumbered the citations after removals');
  }
  return { content: renderDocument(r.model), citations: citationsOf(r.model), revisions: r.notes };
}

/** Writes a first draft, or revises `draft` when `feedback` is given. */
export function write(task: WritingTask): WritingResult {
  return task.draft !== undefined && task.feedback !== undefined ? reviseDocument(task) : composeDocument(task);
}
