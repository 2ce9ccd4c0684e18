import { describe, expect, it } from 'vitest';
import {
  citationNumbers,
  countWords,
  isRepeat,
  joinList,
  keyTerms,
  sentenceKey,
  splitSentences,
  stem,
  stripCitations,
  support,
  tokenize,
  unresolvedReference,
} from '../../src/agents/text.js';

describe('text primitives', () => {
  it('folds the variants of a word onto one stem', () => {
    const same = (words: string[]) => expect(new Set(words.map(stem)).size).toBe(1);
    same(['deliver', 'delivery', 'delivered', 'delivers', 'deliveries']);
    same(['recover', 'recovery', 'recovered']);
    same(['coordinate', 'coordination', 'coordinating', 'coordinator']);
    same(['guarantee', 'guarantees', 'guaranteed']);
    same(['message', 'messages']);
    same(['reliable', 'reliability', 'reliably']);
    expect(stem('process')).toBe('process');
    expect(stem('processes')).toBe('process');
    expect(stem('status')).toBe('status');
    expect(stem('multi-agent')).toBe('multi-agent');
  });

  it('tokenises into lower-case words, keeping hyphenated words whole', () => {
    expect(tokenize("The agent's At-least-once queue, 2 times.")).toEqual(['the', 'agent', 'at-least-once', 'queue', '2', 'times']);
  });

  it('derives key terms from topic and requirements: content words, one per stem, in order', () => {
    expect(keyTerms('Reliable coordination of multi-agent systems', ['message delivery guarantees', 'the delivered messages'])).toEqual([
      'reliable',
      'coordination',
      'multi-agent',
      'systems',
      'message',
      'delivery',
      'guarantees',
    ]);
    expect(keyTerms('The and of')).toEqual([]);
  });

  it('splits sentences without breaking on abbreviations or citations', () => {
    expect(splitSentences('Queues help, e.g. with bursts. Leases expire [2]. Why?\n"Quoted" start! 3 retries follow.')).toEqual([
      'Queues help, e.g. with bursts.',
      'Leases expire [2].',
      'Why?',
      '"Quoted" start!',
      '3 retries follow.',
    ]);
    expect(splitSentences('  ')).toEqual([]);
  });

  it('reads, strips and ignores citation markers', () => {
    expect(citationNumbers('One [1] and two [2, 3]; again [1].')).toEqual([1, 2, 3]);
    expect(stripCitations('Leases expire [2].')).toBe('Leases expire.');
    expect(countWords('Leases expire after a while [12].')).toBe(5);
    expect(sentenceKey('Leases  EXPIRE [4].')).toBe('leases expire');
  });

  it('recognises exact and near repeats but not different sentences', () => {
    expect(isRepeat('A lease hides the message [1].', 'A lease hides the message.')).toBe(true);
    expect(isRepeat('The lease hides a message from other consumers.', 'A lease hides the message from the other consumers!')).toBe(true);
    expect(isRepeat('A lease hides the message.', 'A retry uses exponential backoff.')).toBe(false);
  });

  it('measures how much of a sentence its source supports', () => {
    const source = 'When a consumer takes a message, the queue hides it for the duration of a lease.';
    expect(support('The queue hides a message for the duration of a lease [3].', source)).toBe(1);
    expect(support('Queues encrypt messages at rest.', source)).toBe(0.5);
    expect(support('It is so.', source)).toBe(1);
  });

  it('joins lists in prose', () => {
    expect(joinList([])).toBe('');
    expect(joinList(['a'])).toBe('a');
    expect(joinList(['a', 'b', 'c'])).toBe('a, b and c');
  });

  it('names a definite phrase nothing before it introduces', () => {
    expect(unresolvedReference('The high ratio is balanced by short steeps.', 'Gongfu brewing uses many leaves.')).toBe('The high ratio');
    expect(unresolvedReference('The queue decouples producers from consumers [5].', 'Agents rarely call each other.')).toBe(
      'The queue decouples producers',
    );
    expect(unresolvedReference('Those leases expire [2].', '')).toBe('Those leases expire');
    // Introduced before: by stem, so plurals and singulars meet.
    expect(unresolvedReference('The high ratio is balanced by short steeps.', 'Use a higher leaf ratio.')).toBeNull();
    expect(unresolvedReference('The queues decouple producers.', 'A queue holds messages.')).toBeNull();
    expect(unresolvedReference('The ratios differ.', 'One ratio per tea.')).toBeNull();
    // No definite phrase, a phrase of stopwords only, or the writer's own framing.
    expect(unresolvedReference('A queue decouples producers.', '')).toBeNull();
    expect(unresolvedReference('The same holds for leases.', '')).toBeNull();
    expect(unresolvedReference('The section on leases covered expiry.', '')).toBeNull();
    expect(unresolvedReference('Theory matters.', '')).toBeNull();
  });
});
