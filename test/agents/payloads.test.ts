import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import {
  parseEditingTask,
  parsePassage,
  parseProblem,
  parseResearchTask,
  parseVerificationTask,
  parseWritingTask,
} from '../../src/agents/payloads.js';

const passage = { id: 'a.md:3', source: 'a.md', line: 3, endLine: 5, text: 'Leases expire.', score: 1.5 };

function rejects(fn: () => unknown, message: string | RegExp): void {
  let error: unknown;
  try {
    fn();
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(ValidationError);
  expect((error as ValidationError).code).toBe('validation');
  expect((error as Error).message).toMatch(message);
}

describe('payload guards', () => {
  it('accept well-formed tasks and keep only known fields', () => {
    expect(parseResearchTask({ topic: 'queues', requirements: ['leases'], limit: 5, extra: 1 })).toEqual({
      topic: 'queues',
      requirements: ['leases'],
      limit: 5,
    });
    expect(parseWritingTask({ topic: 't', requirements: [], passages: [passage], words: 300 })).toEqual({
      topic: 't',
      requirements: [],
      passages: [passage],
      words: 300,
    });
    expect(parseWritingTask({ topic: 't', passages: [passage] }).requirements).toEqual([]);
    expect(parseEditingTask({ content: '# T', words: 100, topic: 't' })).toEqual({ content: '# T', words: 100, topic: 't' });
    expect(parseVerificationTask({ content: '', topic: 't', passages: [] })).toEqual({ content: '', topic: 't', passages: [] });
    expect(parsePassage({ ...passage, heading: 'Leases' }).heading).toBe('Leases');
    expect(parseProblem({ kind: 'length', message: 'too short', expected: 400, actual: 200 })).toEqual({
      kind: 'length',
      message: 'too short',
      expected: 400,
      actual: 200,
    });
  });

  it('say what was expected and what came', () => {
    rejects(() => parseResearchTask(null), 'research task: payload must be an object, got `null`');
    rejects(() => parseResearchTask({ topic: '' }), "research task: topic must be a non-empty string, got the string `''`");
    rejects(() => parseResearchTask({ topic: 't', requirements: ['a', 3] }), 'research task: requirements[1] must be a string, got `3`');
    rejects(() => parseResearchTask({ topic: 't', limit: 0 }), 'research task: limit must be an integer 1..100, got `0`');
    rejects(
      () => parseWritingTask({ topic: 't', passages: [] }),
      'writing task: passages must be at least one passage to write from, got an array',
    );
    rejects(
      () => parseWritingTask({ topic: 't', passages: [{ ...passage, endLine: 2 }] }),
      'writing task: passages[0].endLine must be an integer 3..',
    );
    rejects(
      () => parseWritingTask({ topic: 't', passages: [passage], words: 10 }),
      'writing task: words must be an integer 50..20000, got `10`',
    );
    rejects(
      () => parseWritingTask({ topic: 't', passages: [passage], feedback: [] }),
      'writing task: draft must be the document to revise when feedback is given',
    );
    rejects(
      () => parseWritingTask({ topic: 't', passages: [passage], draft: '# d', feedback: [{ kind: 'style', message: 'x' }] }),
      "writing task: feedback[0].kind must be one of citation, length, coverage, structure, repetition, coherence, topic, got the string `'style'`",
    );
    rejects(() => parseEditingTask({ content: 42 }), 'editing task: content must be a string, got `42`');
    rejects(
      () => parseVerificationTask({ content: '', topic: 't' }),
      'verification task: passages must be an array of passages, got `undefined`',
    );
    rejects(() => parsePassage({ ...passage, score: Number.NaN }), 'passage: passage.score must be a finite number, got `NaN`');
  });

  it('name the field on the error', () => {
    expect(() => parseResearchTask({ topic: 't', limit: 'many' })).toThrow(expect.objectContaining({ field: 'limit' }));
    expect(() => parseWritingTask({ topic: 't', passages: [{ ...passage, id: 7 }] })).toThrow(
      expect.objectContaining({ field: 'passages[0].id' }),
    );
  });
});
