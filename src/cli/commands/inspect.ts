import type { Command } from 'commander';
import { DocumentNotFoundError } from '../../errors.js';
import { DEFAULT_HISTORY_PAGE } from '../../state/manager.js';
import type { WorkflowRecord } from '../../state/store.js';
import type { Judgement, WorkflowData } from '../../workflow/types.js';
import { unifiedDiff, diffStat } from '../../state/diff.js';
import { json, scores, table, timestamp } from '../format.js';
import { integer, withJson, withState } from '../options.js';
import { openState, stateUrl, type OpenState } from '../runtime.js';

interface StateFlags {
  state?: string;
  json?: boolean;
}

/** Opens the state read-side, runs `fn`, closes. */
async function withOpenState<T>(flags: StateFlags, fn: (s: OpenState) => Promise<T>): Promise<T> {
  const s = await openState(stateUrl(flags.state), { create: false });
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

function parseVersion(name: string): (value: string) => number {
  return integer(name, 1, Number.MAX_SAFE_INTEGER);
}

/** The orchestrator's data of a workflow record, when it has some. */
function orchestratorData(wf: WorkflowRecord): Partial<WorkflowData> {
  return (wf.data ?? {}) as Partial<WorkflowData>;
}

/**
 * Whether a run met its threshold: `met`, `not met (0.797 < 0.80)`, or `-` while it runs. The
 * score gets a third decimal when two would round it onto the threshold.
 */
export function thresholdCell(d: Partial<WorkflowData>): string {
  if (d.status !== 'completed' || typeof d.accepted !== 'boolean') return '-';
  const threshold = typeof d.input?.['threshold'] === 'number' ? d.input['threshold'] : undefined;
  const gate = d.outputs?.['verification']?.score;
  if (d.accepted) return 'met';
  if (threshold === undefined || gate === undefined) return 'not met';
  const shown = gate.toFixed(2) === threshold.toFixed(2) && gate !== threshold ? gate.toFixed(3) : gate.toFixed(2);
  return `not met (${shown} < ${threshold.toFixed(2)})`;
}

/** The verdict on a version of a document: the judgement of that draft, or of the latest draft when none is named. */
async function verdictFor(store: OpenState['store'], documentId: string, version: number | undefined): Promise<Judgement | undefined> {
  const runs = (await store.listWorkflows()).map(orchestratorData).filter((d) => d.documentId === documentId);
  const judgements = runs.flatMap((d) => d.judgements ?? []);
  return version === undefined ? judgements.at(-1) : judgements.filter((j) => j.draftVersion === version).at(-1);
}

/** Human lines for a verdict: score against threshold, then one line per problem. */
export function verdictLines(j: Judgement): string[] {
  const met = j.score >= j.threshold;
  return [
    `${j.stage} of version ${j.draftVersion} (round ${j.iteration}): score ${j.score.toFixed(2)}, threshold ${j.threshold.toFixed(2)} ${met ? 'met' : 'NOT met'}, ${j.problems.length} problem${j.problems.length === 1 ? '' : 's'}`,
    ...j.problems.map((p) => {
      const o = (p ?? {}) as { kind?: string; message?: string };
      return `  - ${o.kind ?? 'problem'}: ${o.message ?? JSON.stringify(p)}`;
    }),
  ];
}

/** The last verdict's problems: `3 (v7)` (count and the draft version judged), `0`, or `-`. */
export function problemsCell(d: Partial<WorkflowData>): string {
  const last = d.judgements?.at(-1);
  if (!last) return '-';
  return last.problems.length === 0 ? '0' : `${last.problems.length} (v${last.draftVersion})`;
}

/** `history`, `show`, `diff`, `workflows`, `stats`. */
export function registerInspectCommands(program: Command): void {
  withJson(
    withState(
      program
        .command('history')
        .description('list the versions of a document, a page at a time: who wrote it, what changed, when')
        .argument('<documentId>', 'the document')
        .option('--limit <n>', 'page size: the most recent N versions (default 100)', integer('--limit', 1, 1_000_000))
        .option('--before <version>', 'only versions older than this one (the page before it)', parseVersion('--before')),
    ),
  ).action(async (documentId: string, flags: StateFlags & { limit?: number; before?: number }) => {
    await withOpenState(flags, async ({ state }) => {
      const limit = flags.limit ?? DEFAULT_HISTORY_PAGE;
      const history = await state.getStateHistory(documentId, { limit, ...(flags.before === undefined ? {} : { before: flags.before }) });
      if (flags.json) {
        out(json({ documentId, versions: history }));
        return;
      }
      out(
        table(
          ['VERSION', 'ACTOR', 'ACTION', 'TIMESTAMP', 'SUMMARY'],
          history.map((h) => [String(h.version), h.actor, h.action, timestamp(h.timestamp), h.summary ?? '']),
        ),
      );
      const actors = [...new Set(history.map((h) => h.actor))];
      out(`\n${history.length} version${history.length === 1 ? '' : 's'} by ${actors.join(', ')}`);
      // A full page may have older versions before it: say how to get them.
      const first = history[0]?.version;
      if (history.length === limit && first !== undefined && first > 1) out(`older versions: concord history ${documentId} --before ${first}`);
    });
  });

  withJson(
    withState(
      program
        .command('show')
        .description('print a document (its latest version, or --version N)')
        .argument('<documentId>', 'the document')
        .option('--version <n>', 'the version to show', parseVersion('--version')),
    ),
  ).action(async (documentId: string, flags: StateFlags & { version?: number }) => {
    await withOpenState(flags, async ({ state, store }) => {
      const doc =
        flags.version !== undefined ? await state.getDocumentAtVersion(documentId, flags.version) : await state.getDocumentState(documentId);
      if (!doc) throw new DocumentNotFoundError(documentId);
      const verdict = await verdictFor(store, documentId, flags.version);
      if (flags.json) out(json({ ...doc, verification: verdict ?? null }));
      else {
        out(doc.content);
        // On stderr, so `concord show DOC > doc.md` still writes only the document.
        if (verdict) process.stderr.write(verdictLines(verdict).join('\n') + '\n');
      }
    });
  });

  withJson(
    withState(
      program
        .command('diff')
        .description('a unified diff between two versions of a document')
        .argument('<documentId>', 'the document')
        .argument('<from>', 'the older version', parseVersion('<from>'))
        .argument('<to>', 'the newer version', parseVersion('<to>'))
        .option('--context <n>', 'lines of context around each change (default 3)', integer('--context', 0, 1000)),
    ),
  ).action(async (documentId: string, from: number, to: number, flags: StateFlags & { context?: number }) => {
    await withOpenState(flags, async ({ state }) => {
      const a = await state.getDocumentAtVersion(documentId, from);
      const b = await state.getDocumentAtVersion(documentId, to);
      const actor = (v: number, doc: typeof a) => doc.history.find((h) => h.version === v)?.actor;
      const label = (v: number, doc: typeof a) => `${documentId}@${v}${actor(v, doc) ? ` (${actor(v, doc)})` : ''}`;
      const diff = unifiedDiff(a.content, b.content, {
        fromLabel: label(from, a),
        toLabel: label(to, b),
        ...(flags.context !== undefined ? { context: flags.context } : {}),
      });
      if (flags.json) {
        out(json({ documentId, from, to, ...diffStat(a.content, b.content), diff }));
        return;
      }
      out(diff === '' ? `versions ${from} and ${to} of ${documentId} have the same content` : diff);
    });
  });

  withJson(
    withState(program.command('workflows').description('list workflows: status, stage, iteration, scores')),
  ).action(async (flags: StateFlags) => {
    await withOpenState(flags, async ({ store }) => {
      const workflows = (await store.listWorkflows()).sort((a, b) => b.updatedAt.getTime() - a.updatedAt.getTime());
      if (flags.json) {
        out(
          json(
            workflows.map((wf) => {
              const d = orchestratorData(wf);
              return {
                workflowId: wf.workflowId,
                status: d.status ?? null,
                stage: wf.stage,
                iteration: d.iteration ?? wf.iteration,
                completedStages: wf.completedStages,
                pendingStages: wf.pendingStages,
                qualityScores: wf.qualityScores,
                documentId: d.documentId ?? null,
                topic: d.topic ?? null,
                accepted: d.accepted ?? null,
                judgements: d.judgements ?? [],
                stopped: d.stopped ?? null,
                error: d.error ?? null,
                createdAt: wf.createdAt,
                updatedAt: wf.updatedAt,
              };
            }),
          ),
        );
        return;
      }
      if (workflows.length === 0) {
        out('no workflows yet (start one with `concord demo` or `concord run`)');
        return;
      }
      out(
        table(
          ['WORKFLOW', 'STATUS', 'STAGE', 'ITERATION', 'THRESHOLD', 'PROBLEMS', 'SCORES', 'DOCUMENT', 'UPDATED'],
          workflows.map((wf) => {
            const d = orchestratorData(wf);
            const stage = wf.stage === null ? '-' : `${wf.stage}${wf.completedStages.includes(wf.stage) ? '' : ' (in progress)'}`;
            return [
              wf.workflowId,
              d.status ?? '-',
              d.status === 'completed' ? 'done' : stage,
              String(d.iteration ?? wf.iteration),
              thresholdCell(d),
              problemsCell(d),
              scores(wf.qualityScores, wf.stages),
              d.documentId ?? '-',
              timestamp(wf.updatedAt),
            ];
          }),
        ),
      );
      // What was wrong, where verification found something: the latest verdict of each such run.
      for (const wf of workflows) {
        const last = orchestratorData(wf).judgements?.at(-1);
        if (last && last.problems.length > 0) out(`\n${wf.workflowId}: ${verdictLines(last).join('\n')}`);
      }
    });
  });

  withJson(
    withState(program.command('stats').description('state metrics: documents, versions, workflows by status')),
  ).action(async (flags: StateFlags) => {
    await withOpenState(flags, async ({ url, state, store }) => {
      const metrics = await state.refreshMetrics();
      const workflows = await store.listWorkflows();
      const byStatus: Record<string, number> = {};
      for (const wf of workflows) {
        const status = orchestratorData(wf).status ?? 'other';
        byStatus[status] = (byStatus[status] ?? 0) + 1;
      }
      const documents = await store.listDocuments();
      const stats = {
        state: url,
        documents: metrics.activeDocuments,
        workflows: metrics.activeWorkflows,
        workflowsByStatus: byStatus,
        totalStateChanges: metrics.totalStateChanges,
        averageDocumentVersion: metrics.averageDocumentVersion,
        latestDocument: documents.sort((a, b) => b.updatedAt.getTime() - a.updatedAt.getTime())[0]?.documentId ?? null,
      };
      if (flags.json) {
        out(json(stats));
        return;
      }
      const rows: Array<[string, string]> = [
        ['state', url],
        ['documents', String(stats.documents)],
        ['workflows', `${stats.workflows}${workflows.length ? ` (${Object.entries(byStatus).map(([k, v]) => `${v} ${k}`).join(', ')})` : ''}`],
        ['state changes', String(stats.totalStateChanges)],
        ['average document version', stats.averageDocumentVersion.toFixed(1)],
        ...(stats.latestDocument ? [['latest document', stats.latestDocument] as [string, string]] : []),
      ];
      const width = Math.max(...rows.map(([k]) => k.length));
      out(rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n'));
    });
  });
}
