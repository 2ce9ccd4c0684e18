import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { MessageBus, MessageType, defineAgent } from '../../src/index.js';
import { resolveTransport } from '../../src/connect.js';
import type { Transport } from '../../src/bus/transport.js';
import { serviceAvailable, waitFor } from '../helpers/services.js';
import { cleanupNamespace, redisNamespace, redisUrl } from '../redis/helpers.js';
import { ROOT, requireBuild, runCli, startCli, tempDir, type CliProcess } from '../cli/helpers.js';
import { CHROMIUM, chromiumAvailable, parseExposition } from './helpers.js';

/** The page's `document`, inside functions Playwright runs in the browser (the tests compile without the DOM lib). */
declare const document: {
  querySelector(s: string): { textContent: string | null } | null;
  querySelectorAll(s: string): ArrayLike<{ textContent: string | null }> & Iterable<{ textContent: string | null }>;
};

const up = (await serviceAvailable('redis')) && chromiumAvailable();
/** Screenshots go to docs/images (committed) with CONCORD_SCREENSHOTS=1, else to the test's temp dir (a plain test run leaves the tree clean). */
const IMAGES_TO_DOCS = process.env['CONCORD_SCREENSHOTS'] === '1';
const TOKEN = 'test-token-' + process.pid;

/**
 * The whole dashboard in a real browser: `concord dashboard` (a child process) over a Redis bus
 * and a SQLite state while `concord demo` runs against the same backends, and a few agents of
 * this process make a dead letter and a held lease to look at.
 */
describe.runIf(up)('concord dashboard in Chromium', () => {
  const ns = redisNamespace('dash');
  const bus = redisUrl(ns);
  const tmp = tempDir('concord-dash-');
  const IMAGES = IMAGES_TO_DOCS ? join(ROOT, 'docs', 'images') : join(tmp.dir, 'images');
  const state = `sqlite:${join(tmp.dir, 'concord.db')}`;
  let dashboard: CliProcess;
  let url: string;
  let browser: Browser;
  let page: Page;
  let transport: Transport;
  let local: MessageBus;
  let release: () => void = () => {};
  let delivered = 0;
  let fixed = false;

  beforeAll(async () => {
    requireBuild();
    mkdirSync(IMAGES, { recursive: true });
    dashboard = startCli(['dashboard', '--bus', bus, '--state', state, '--port', '0', '--token', TOKEN], { cwd: tmp.dir });
    url = (await dashboard.waitFor(/concord dashboard on (http:\/\/127\.0\.0\.1:\d+\/)/))[1]!;
    transport = await resolveTransport(bus);
    await transport.connect();
    local = new MessageBus({ transport, maxAttempts: 2, backoff: { initialMs: 20, jitter: 0 } });
    // `billing` fails until the test fixes it: its tasks die after two attempts, then a redrive delivers.
    local.registerAgent(
      'billing',
      defineAgent({
        name: 'billing',
        async handleMessage(message, ctx) {
          if (!fixed) throw new Error('billing backend unavailable (503)');
          delivered++;
          await ctx.send({ recipient: '', type: MessageType.STATUS, payload: { delivered: message.id } });
        },
      }),
    );
    // `archive` holds its message until released: a lease to see in the leases view.
    local.registerAgent(
      'archive',
      defineAgent({ name: 'archive', handleMessage: () => new Promise<void>((resolve) => (release = resolve)) }),
    );
    await local.ready();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
  }, 60_000);

  afterAll(async () => {
    release();
    await browser?.close();
    await local?.close();
    await transport?.close();
    dashboard?.child.kill('SIGTERM');
    await dashboard?.exited;
    await cleanupNamespace(ns);
    tmp.cleanup();
  });

  const shot = (name: string) => page.screenshot({ path: join(IMAGES, `dashboard-${name}.png`) });
  const tab = (name: string) => page.click(`#tabs button[data-view="${name}"]`);

  it('shows the agents and their queues, and the timeline fills as the demo runs', async () => {
    await page.goto(url);
    await page.waitForSelector('#live.live');
    const demo = await runCli(['demo', '--bus', bus, '--state', state, '--threshold', '0.99'], { cwd: tmp.dir, timeoutMs: 60_000 });
    expect(demo.stderr).not.toMatch(/concord: /);
    for (let i = 0; i < 2; i++)
      await local.send({ sender: 'shop', recipient: 'billing', type: MessageType.TASK, payload: { order: 1000 + i, amount: 42 } });
    await local.send({ sender: 'shop', recipient: 'archive', type: MessageType.TASK, payload: { order: 7 }, priority: 8 });
    await waitFor(async () => (await transport.listDeadLetters()).length === 2, 'two billing tasks to be dead-lettered', 10_000);

    await page.waitForSelector('#agents tr[data-agent="writing"]');
    await page.waitForSelector('#agents tr[data-agent="billing"]');
    await page.waitForFunction(() => document.querySelector('#agents tr[data-agent="archive"] td:nth-child(4)')?.textContent === '1');
    await shot('agents');

    await tab('timeline');
    await page.waitForFunction(() => document.querySelectorAll('#timeline tbody tr').length >= 10);
    const rows = await page.$$eval('#timeline tbody tr td:nth-child(3)', (tds) => tds.map((td) => td.textContent));
    expect(rows.some((r) => r?.includes('→ writing'))).toBe(true);
    // The full message, then a conversation: a request and its reply as arrows, with the versions written.
    await page.click('#timeline tbody tr:has(td:nth-child(3):text("→ writing"))');
    await page.waitForSelector('#message-json');
    expect(await page.textContent('#message-json')).toMatch(/"recipient": "writing"/);
    await page.click('#timeline tbody tr:has(td:nth-child(3):text("→ writing")) a.correlation');
    await page.waitForSelector('#conversation .arrow');
    expect(await page.$$eval('#conversation .arrow', (a) => a.length)).toBeGreaterThanOrEqual(2);
    await page.waitForSelector('#conversation .arrow a');
    expect(await page.textContent('#conversation')).toMatch(/wrote .*@\d+ \((create|update_content|update_metadata)\)/);
    // Filters: by type, then by agent.
    await page.selectOption('#filters select[name=type]', 'result');
    await page.waitForFunction(() =>
      [...document.querySelectorAll('#timeline tbody tr td:nth-child(2)')].every((td) => td.textContent === 'result'),
    );
    await page.selectOption('#filters select[name=type]', '');
    await page.fill('#filters input[name=agent]', 'billing');
    await page.waitForFunction(() =>
      [...document.querySelectorAll('#timeline tbody tr td:nth-child(3)')].every((td) => td.textContent?.includes('billing')),
    );
    expect(await page.$$eval('#timeline tbody tr', (r) => r.length)).toBe(2);
    await page.fill('#filters input[name=agent]', '');
    await shot('timeline');
  });

  it('shows who holds which lease, and until when', async () => {
    await tab('leases');
    await page.waitForSelector('#leases tbody tr:has(td:text("archive"))');
    const cells = await page.$$eval('#leases tbody tr:has(td:text("archive")) td', (tds) => tds.map((td) => td.textContent));
    expect(cells[3]).toBe('1');
    // The holder: the bus of this process that leased it (`<host>:<pid>:<bus id>`).
    expect(cells[4]).toContain(`:${process.pid}:`);
    expect(cells[6]).toMatch(/s|min/);
    await shot('leases');
    release();
  });

  it('opens a document, its version history and a diff between two versions', async () => {
    await tab('documents');
    await page.click('#documents tbody tr');
    await page.waitForSelector('#history tbody tr');
    expect(await page.$$eval('#history tbody tr', (r) => r.length)).toBeGreaterThanOrEqual(3);
    expect(await page.textContent('#history')).toMatch(/writing/);
    await page.selectOption('#document select[name=from]', '1');
    await page.click('#compare');
    await page.waitForSelector('#diff .hunk');
    expect(await page.$$eval('#diff .add', (l) => l.length)).toBeGreaterThan(0);
    await shot('documents');
  });

  it('shows the workflow: stages, scores, iterations and whether it met its threshold', async () => {
    await tab('workflows');
    await page.waitForSelector('.workflow .stage');
    const text = await page.textContent('#workflows');
    expect(text).toMatch(/completed|failed/);
    expect(text).toMatch(/score \d\.\d\d/);
    expect(text).toMatch(/iteration \d/);
    expect(text).toMatch(/met its thresholds|did not meet its thresholds/);
    // Each verdict verification gave, with the version it judged and the problems it found.
    expect(text).toMatch(/verification round \d+ judged v\d+: \d\.\d\d against 0\.99/);
    await shot('workflows');
  });

  it('refuses a redrive without the token, redrives with it and the message is delivered, then purges with confirmation', async () => {
    await tab('dead-letters');
    await page.waitForFunction(() => document.querySelectorAll('#dead-letters tbody tr[data-id]').length === 2);
    await page.click('#dead-letters tbody tr[data-id]');
    expect(await page.textContent('#letter')).toMatch(/billing backend unavailable \(503\)/);
    await shot('dead-letters');

    // Without the token: refused, and the letter stays.
    page.once('dialog', () => {});
    await page.click('#dead-letters tbody tr[data-id] button.redrive');
    await page.click('#confirm-ok');
    await page.waitForSelector('#dlq-status.error');
    expect(await page.textContent('#dlq-status')).toMatch(/token/);
    expect((await transport.listDeadLetters()).length).toBe(2);
    const refused = await fetch(new URL('api/dead-letters/purge', url), { method: 'POST' });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: string }).error).toMatch(/x-concord-token/);

    // With it: redriven, and this time billing takes it.
    fixed = true;
    await page.fill('#token', TOKEN);
    await page.click('#dead-letters tbody tr[data-id] button.redrive');
    await page.click('#confirm-ok');
    await page.waitForSelector('#dlq-status.ok');
    expect(await page.textContent('#dlq-status')).toMatch(/redrove .* to billing/);
    await waitFor(() => delivered === 1, 'the redriven task to be delivered');
    await tab('timeline');
    await page.waitForSelector('#timeline tbody tr:has(td:text("billing → (topic)"))');

    // Purge: cancelled first (nothing happens), then confirmed.
    await tab('dead-letters');
    await page.waitForFunction(() => document.querySelectorAll('#dead-letters tbody tr[data-id]').length === 1);
    await page.click('#purge');
    await page.click('#confirm button[value=cancel]');
    expect((await transport.listDeadLetters()).length).toBe(1);
    await page.click('#purge');
    await page.click('#confirm-ok');
    await page.waitForFunction(() => document.querySelector('#dlq-status')?.textContent === 'purged 1 dead letter');
    expect(await transport.listDeadLetters()).toEqual([]);
  });

  it('serves /metrics in the Prometheus text format with the backend-wide figures', async () => {
    const res = await fetch(new URL('metrics', url));
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const e = parseExposition(await res.text());
    expect(e.types.get('concord_queue_messages')).toBe('gauge');
    expect(
      e.samples.find((s) => s.name === 'concord_queue_messages' && s.labels['queue'] === 'writing' && s.labels['state'] === 'ready')?.value,
    ).toBe(0);
    expect(e.types.get('concord_messages_sent_total')).toBe('counter');
    // Every TASK seen: one per stage run of the demo (however many revision rounds it took) and the three sent above.
    const workflows = (await (await fetch(new URL('api/workflows', url))).json()) as { data?: { runs?: Record<string, number> } }[];
    const stageRuns = workflows.reduce((n, w) => n + Object.values(w.data?.runs ?? {}).reduce((a, b) => a + b, 0), 0);
    expect(stageRuns).toBeGreaterThanOrEqual(4);
    expect(e.samples.find((s) => s.name === 'concord_messages_sent_total' && s.labels['type'] === 'task')!.value).toBeGreaterThanOrEqual(
      stageRuns + 3,
    );
    expect(e.samples.find((s) => s.name === 'concord_messages_dead_lettered_total' && s.labels['reason'] === 'max_attempts')?.value).toBe(
      2,
    );
    const commits = e.samples.filter((s) => s.name === 'concord_state_commits_total' && s.labels['kind'] === 'document');
    expect(commits.reduce((n, s) => n + s.value, 0)).toBeGreaterThanOrEqual(3);
    expect(commits.find((s) => s.labels['action'] === 'update_content')!.value).toBeGreaterThanOrEqual(1);
    expect(e.types.get('concord_queue_oldest_message_age_seconds')).toBe('gauge');
  });
});
