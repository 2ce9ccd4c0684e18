import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore, MemoryTransport, MessageBus, StateManager } from '../../src/index.js';
import { createDashboard, type Dashboard } from '../../src/dashboard/index.js';

describe('dashboard document history', () => {
  const store = new MemoryStore();
  const state = new StateManager({ store });
  const transport = new MemoryTransport();
  const bus = new MessageBus({ transport });
  let dash: Dashboard;

  beforeAll(async () => {
    dash = await createDashboard({ bus, transport, state: { manager: state, store } });
    let doc = await state.createDocumentState({ documentId: 'd', topic: 't', content: 'v1' });
    for (let v = 2; v <= 150; v++)
      doc = await state.updateDocumentContent({ documentId: 'd', content: `v${v}`, actor: 'w', expectedVersion: doc.version });
  });

  afterAll(async () => {
    await dash?.close();
    await bus.close();
    await state.close();
  });

  async function history(query: string): Promise<{ status: number; versions: number[] }> {
    const res = await dash.fetch(new Request(`http://dashboard/api/documents/d${query}`));
    const body = (await res.json()) as { history?: { version: number }[] };
    return { status: res.status, versions: (body.history ?? []).map((h) => h.version) };
  }

  it('returns one page of the history: the 100 newest by default, ?limit= and ?before= to page back', async () => {
    expect(await history('')).toEqual({ status: 200, versions: Array.from({ length: 100 }, (_, i) => i + 51) });
    expect(await history('?limit=5&before=50')).toEqual({ status: 200, versions: [45, 46, 47, 48, 49] });
    expect(await history('?version=3&limit=2')).toEqual({ status: 200, versions: [149, 150] });
    expect((await history('?limit=0')).status).toBe(400);
    expect((await history('?before=x')).status).toBe(400);
  });
});
