// The Concord dashboard page: plain DOM, no build step, no other host. Data from /api/*, live
// updates from /api/events (Server-Sent Events).

const $ = (sel) => document.querySelector(sel);

/** Builds an element: h('td', { class: 'x', onclick }, 'text', child). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

async function api(path, options = {}) {
  const res = await fetch(path, options);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(body.error ?? `${res.status} ${res.statusText}`), { status: res.status });
  return body;
}

const time = (iso) =>
  new Date(iso).toLocaleTimeString([], { hour12: false }) + '.' + String(new Date(iso).getMilliseconds()).padStart(3, '0');
const age = (ms) =>
  ms === null || ms === undefined
    ? '–'
    : ms < 1000
      ? `${ms} ms`
      : ms < 60_000
        ? `${(ms / 1000).toFixed(1)} s`
        : `${Math.round(ms / 60_000)} min`;
const short = (id) => (id ? String(id).slice(-8) : '');
const typeTag = (t) => h('span', { class: `type type-${t}` }, t);

let view = 'agents';
const messages = [];
const filters = { agent: '', type: '', correlationId: '' };

// ------------------------------------------------------------------------------ tabs

function show(name) {
  view = name;
  for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.view === name);
  for (const s of document.querySelectorAll('.view')) s.classList.toggle('active', s.id === `view-${name}`);
  refresh(name);
}

function refresh(name = view) {
  const loaders = {
    agents: loadAgents,
    timeline: renderTimeline,
    leases: loadLeases,
    'dead-letters': loadDeadLetters,
    documents: loadDocuments,
    workflows: loadWorkflows,
  };
  loaders[name]?.().catch((err) => console.error(err));
}

// ------------------------------------------------------------------------------ agents

async function loadAgents() {
  const o = await api('/api/overview');
  $('#backend').textContent = `bus ${o.bus} · state ${o.state ?? '–'}`;
  $('#dlq-count').textContent = o.deadLetters ? String(o.deadLetters) : '';
  const body = $('#agents tbody');
  body.replaceChildren(
    ...o.queues.map((q) =>
      h(
        'tr',
        {
          'data-agent': q.name,
          onclick: () => {
            filters.agent = q.name;
            $('#filters [name=agent]').value = q.name;
            show('timeline');
          },
        },
        h('td', {}, q.name),
        h('td', {}, q.ready),
        h('td', {}, q.delayed),
        h('td', {}, q.inFlight),
        h('td', { class: 'mono' }, q.byPriority ? q.byPriority.slice().reverse().join(' ') : '–'),
        h('td', {}, q.receivedPerMinute),
        h('td', {}, q.sentPerMinute),
        h('td', {}, age(q.oldestAgeMs)),
      ),
    ),
  );
  if (o.queues.length === 0) body.append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'no agents registered on this bus yet')));
}

// ------------------------------------------------------------------------------ timeline

function matches(m) {
  return (
    (!filters.agent || m.sender === filters.agent || m.recipient === filters.agent) &&
    (!filters.type || m.type === filters.type) &&
    (!filters.correlationId || m.correlationId === filters.correlationId)
  );
}

function messageRow(m) {
  return h(
    'tr',
    { 'data-id': m.id, onclick: () => showMessage(m) },
    h('td', { class: 'mono' }, time(m.timestamp)),
    h('td', {}, typeTag(m.type)),
    h('td', {}, `${m.sender} → ${m.recipient || '(topic)'}`),
    h('td', {}, m.priority),
    h('td', {}, m.attempt),
    h(
      'td',
      {},
      m.correlationId
        ? h(
            'a',
            {
              class: 'mono correlation',
              onclick: (e) => {
                e.stopPropagation();
                showConversation(m.correlationId);
              },
            },
            short(m.correlationId),
          )
        : '',
    ),
    h('td', { class: 'mono' }, short(m.traceId)),
  );
}

async function renderTimeline() {
  if (messages.length === 0) {
    const q = new URLSearchParams();
    messages.push(...(await api('/api/messages?' + q)));
  }
  const rows = messages.filter(matches).slice(-300).reverse();
  $('#timeline tbody').replaceChildren(...rows.map(messageRow));
}

function showMessage(m) {
  $('#detail').replaceChildren(
    h('h3', {}, `${m.type} ${m.sender} → ${m.recipient || '(topic)'}`),
    h('pre', { id: 'message-json' }, JSON.stringify(m, null, 2)),
  );
}

async function showConversation(id) {
  const c = await api(`/api/conversations/${encodeURIComponent(id)}`);
  const panel = h('div', { id: 'conversation' }, h('h3', {}, `Conversation ${short(id)}`), h('p', { class: 'muted mono' }, id));
  for (const row of c.messages) {
    const m = row.message;
    panel.append(
      h(
        'div',
        { class: 'arrow' },
        h('span', { class: 'mono' }, time(m.timestamp)),
        h(
          'div',
          {},
          h('span', { class: 'who' }, m.sender),
          ' → ',
          h('span', { class: 'who' }, m.recipient || '(topic)'),
          ' ',
          typeTag(m.type),
          ` attempt ${m.attempt}`,
          row.deadLetter
            ? h(
                'div',
                { class: 'dead' },
                `dead letter: ${row.deadLetter.reason} after ${row.deadLetter.attempts} attempts — ${row.deadLetter.error ?? ''}`,
              )
            : null,
          row.versions.length
            ? h(
                'div',
                { class: 'muted' },
                'wrote ',
                row.versions.map((v) => h('a', { onclick: () => openDocument(v.id, v.version) }, `${v.id}@${v.version} (${v.action}) `)),
              )
            : null,
        ),
      ),
    );
  }
  $('#detail').replaceChildren(panel);
}

// ------------------------------------------------------------------------------ leases

async function loadLeases() {
  const { supported, leases } = await api('/api/leases');
  const body = $('#leases tbody');
  body.replaceChildren(
    ...leases.map((l) =>
      h(
        'tr',
        {},
        h('td', {}, l.queue),
        h('td', { class: 'mono' }, short(l.message.id)),
        h('td', {}, typeTag(l.message.type)),
        h('td', {}, l.attempt),
        h('td', { class: 'mono holder' }, l.holder ?? '—'),
        h('td', { class: 'mono' }, l.token),
        h('td', {}, age(Math.max(0, l.expiresInMs))),
      ),
    ),
  );
  if (leases.length === 0)
    body.append(
      h(
        'tr',
        {},
        h('td', { colspan: 7, class: 'muted' }, supported ? 'no message is leased right now' : 'this transport cannot list its leases'),
      ),
    );
}

// ------------------------------------------------------------------------------ dead letters

function token() {
  return $('#token').value.trim();
}

function confirmAction(text) {
  const dialog = $('#confirm');
  $('#confirm-text').textContent = text;
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

function status(text, ok) {
  const el = $('#dlq-status');
  el.textContent = text;
  el.className = `status ${ok ? 'ok' : 'error'}`;
}

async function act(path, what) {
  try {
    const res = await api(path, { method: 'POST', headers: { 'x-concord-token': token() } });
    status(what(res), true);
  } catch (err) {
    status(err.message, false);
  }
  await loadDeadLetters();
}

async function loadDeadLetters() {
  const letters = await api('/api/dead-letters');
  $('#dlq-count').textContent = letters.length ? String(letters.length) : '';
  const body = $('#dead-letters tbody');
  body.replaceChildren(
    ...letters.map((l) =>
      h(
        'tr',
        {
          'data-id': l.message.id,
          onclick: () => $('#letter').replaceChildren(h('h3', {}, `Dead letter ${l.message.id}`), h('pre', {}, JSON.stringify(l, null, 2))),
        },
        h('td', { class: 'mono' }, short(l.message.id)),
        h('td', {}, l.queue),
        h('td', {}, typeTag(l.message.type)),
        h('td', {}, l.reason),
        h('td', {}, l.attempts),
        h('td', { class: 'mono' }, time(l.deadAt)),
        h('td', {}, (l.error ?? '').split('\n')[0].slice(0, 120)),
        h(
          'td',
          {},
          h(
            'button',
            {
              class: 'redrive',
              onclick: async (e) => {
                e.stopPropagation();
                if (await confirmAction(`Put message ${l.message.id} back on queue ${l.queue}?`))
                  await act(
                    `/api/dead-letters/${encodeURIComponent(l.message.id)}/redrive`,
                    (r) => `redrove ${r.redriven.id} to ${r.redriven.recipient}`,
                  );
              },
            },
            'Redrive…',
          ),
        ),
      ),
    ),
  );
  if (letters.length === 0) body.append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'no dead letters')));
}

// ------------------------------------------------------------------------------ documents

async function loadDocuments() {
  const docs = await api('/api/documents');
  $('#documents tbody').replaceChildren(
    ...docs.map((d) =>
      h(
        'tr',
        { 'data-id': d.documentId, onclick: () => openDocument(d.documentId) },
        h('td', {}, d.documentId),
        h('td', {}, d.version),
        h('td', { class: 'mono' }, time(d.updatedAt)),
      ),
    ),
  );
}

function diffView(text) {
  return h(
    'pre',
    { class: 'diff', id: 'diff' },
    text === ''
      ? 'the two versions have the same content'
      : text
          .split('\n')
          .map((line) =>
            h(
              'span',
              { class: line.startsWith('@@') ? 'hunk' : line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : '' },
              line + '\n',
            ),
          ),
  );
}

async function openDocument(id, version) {
  if (view !== 'documents') show('documents');
  const doc = await api(`/api/documents/${encodeURIComponent(id)}` + (version ? `?version=${version}` : ''));
  const versions = doc.history.map((v) => v.version);
  const pick = (name, value) =>
    h(
      'select',
      { name },
      versions.map((v) => h('option', { value: v, selected: v === value }, `v${v}`)),
    );
  const from = pick('from', versions[Math.max(0, versions.length - 2)]);
  const to = pick('to', versions[versions.length - 1]);
  const out = h('div', { id: 'diff-out' });
  const compare = async () => {
    const d = await api(`/api/documents/${encodeURIComponent(id)}/diff?from=${from.value}&to=${to.value}`);
    out.replaceChildren(h('p', { class: 'muted' }, `+${d.added} −${d.removed} lines`), diffView(d.diff));
  };
  $('#document').replaceChildren(
    h('h3', {}, `${id} @ v${doc.version}`),
    h(
      'table',
      { id: 'history' },
      h(
        'thead',
        {},
        h('tr', {}, h('th', {}, 'Version'), h('th', {}, 'Actor'), h('th', {}, 'Action'), h('th', {}, 'When'), h('th', {}, 'Summary')),
      ),
      h(
        'tbody',
        {},
        doc.history.map((v) =>
          h(
            'tr',
            { onclick: () => openDocument(id, v.version) },
            h('td', {}, v.version),
            h('td', {}, v.actor),
            h('td', {}, v.action),
            h('td', { class: 'mono' }, time(v.timestamp)),
            h('td', {}, v.summary ?? ''),
          ),
        ),
      ),
    ),
    h('p', {}, 'Diff ', from, ' → ', to, ' ', h('button', { id: 'compare', onclick: compare }, 'Compare')),
    out,
    h('h4', {}, 'Content'),
    h('pre', { id: 'content' }, doc.content),
  );
}

// ------------------------------------------------------------------------------ workflows

async function loadWorkflows() {
  const workflows = await api('/api/workflows');
  const root = $('#workflows');
  root.replaceChildren(
    ...workflows.map((w) => {
      const d = w.data ?? {};
      const threshold = d.feedback?.threshold;
      const met = d.accepted;
      return h(
        'div',
        { class: 'workflow', 'data-id': w.workflowId },
        h(
          'h3',
          {},
          w.workflowId,
          ' ',
          h('span', { class: 'badge' }, d.status ?? '–'),
          ' ',
          met === true
            ? h('span', { class: 'met' }, 'met its thresholds')
            : met === false
              ? h('span', { class: 'unmet' }, 'did not meet its thresholds')
              : '',
        ),
        h(
          'p',
          { class: 'muted' },
          d.topic ? `“${d.topic}” → ${d.documentId}` : '',
          ` · iteration ${d.iteration ?? w.iteration}`,
          threshold !== undefined ? ` · last threshold ${threshold}` : '',
        ),
        h(
          'div',
          { class: 'stages' },
          w.stages.map((s) =>
            h(
              'div',
              {
                class: `stage ${w.completedStages.includes(s) ? 'completed' : ''} ${w.stage === s && d.status === 'running' ? 'current' : ''}`,
              },
              h('div', {}, h('b', {}, s)),
              h('div', { class: 'muted' }, w.completedStages.includes(s) ? 'done' : w.stage === s ? 'in progress' : 'pending'),
              w.qualityScores[s] !== undefined ? h('div', {}, `score ${Number(w.qualityScores[s]).toFixed(2)}`) : null,
              d.runs?.[s] ? h('div', { class: 'muted' }, `${d.runs[s]} run${d.runs[s] === 1 ? '' : 's'}`) : null,
            ),
          ),
        ),
        (d.revisions ?? []).length
          ? h(
              'div',
              {},
              h('b', {}, 'Revisions: '),
              d.revisions
                .map((r) => `round ${r.fromIteration}: ${r.stage} scored ${r.score} → back to ${r.to} (${r.problems} problems)`)
                .join('; '),
            )
          : null,
        (d.judgements ?? []).length
          ? h(
              'div',
              { class: 'judgements' },
              h('b', {}, 'Verdicts: '),
              h(
                'ul',
                {},
                d.judgements.map((j) =>
                  h(
                    'li',
                    { class: j.score >= j.threshold ? 'met' : 'unmet' },
                    `${j.stage} round ${j.iteration} judged v${j.draftVersion}: ${Number(j.score).toFixed(2)} against ${j.threshold}`,
                    j.problems.length
                      ? h(
                          'ul',
                          {},
                          j.problems.map((p) =>
                            h(
                              'li',
                              { class: 'problem' },
                              typeof p === 'object' && p !== null ? `${p.kind ?? 'problem'}: ${p.message ?? JSON.stringify(p)}` : String(p),
                            ),
                          ),
                        )
                      : null,
                  ),
                ),
              ),
            )
          : d.feedback?.problems?.length
            ? h('pre', {}, JSON.stringify(d.feedback.problems, null, 2))
            : null,
        d.stopped
          ? h('p', { class: 'unmet' }, `revisions stopped after round ${d.stopped.iteration} (${d.stopped.stage}): ${d.stopped.reason}`)
          : null,
        d.error ? h('p', { class: 'unmet' }, `failed in ${d.error.stage}: ${d.error.message}`) : null,
      );
    }),
  );
  if (workflows.length === 0) root.append(h('p', { class: 'muted' }, 'no workflows yet'));
}

// ------------------------------------------------------------------------------ live

let pending = false;
function soon(name) {
  if (pending) return;
  pending = true;
  setTimeout(() => {
    pending = false;
    if (view === name) refresh(name);
  }, 200);
}

function connect() {
  const events = new EventSource('/api/events');
  events.addEventListener('hello', () => {
    $('#live').textContent = 'live';
    $('#live').className = 'badge live';
  });
  events.onerror = () => {
    $('#live').textContent = 'reconnecting…';
    $('#live').className = 'badge';
  };
  events.addEventListener('message', (e) => {
    const m = JSON.parse(e.data);
    messages.push(m);
    if (messages.length > 2000) messages.splice(0, messages.length - 2000);
    if (view === 'timeline' && matches(m)) $('#timeline tbody').prepend(messageRow(m));
  });
  events.addEventListener('change', (e) => {
    const c = JSON.parse(e.data);
    if (c.kind === 'workflow') soon('workflows');
    else soon('documents');
  });
  for (const kind of ['dead_letter', 'redriven']) events.addEventListener(kind, () => soon('dead-letters'));
  events.addEventListener('tick', () => {
    if (view === 'agents' || view === 'leases') refresh();
  });
}

// ------------------------------------------------------------------------------ start

for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => show(b.dataset.view));
$('#filters').addEventListener('input', (e) => {
  filters[e.target.name] = e.target.value.trim();
  renderTimeline();
});
$('#filters').addEventListener('reset', () => {
  setTimeout(() => {
    filters.agent = filters.type = filters.correlationId = '';
    renderTimeline();
  });
});
$('#purge').addEventListener('click', async () => {
  if (await confirmAction('Delete every dead letter for good?'))
    await act('/api/dead-letters/purge', (r) => `purged ${r.purged} dead letter${r.purged === 1 ? '' : 's'}`);
});
$('#token').value = new URLSearchParams(location.hash.slice(1)).get('token') ?? sessionStorage.getItem('concord-token') ?? '';
$('#token').addEventListener('change', () => sessionStorage.setItem('concord-token', token()));
connect();
show(location.search.match(/view=([\w-]+)/)?.[1] ?? 'agents');
