/**
 * The reference document agents the `concord` command runs: research → writing → editing →
 * verification, deterministic and offline. See `payloads.ts` for the payloads they exchange.
 */
import { fileURLToPath } from 'node:url';
import type { Agent } from '../bus/agent.js';
import { createEditingAgent } from './editing-agent.js';
import type { EditingResult, ResearchResult, VerificationResult, WritingResult } from './payloads.js';
import { createResearchAgent } from './research-agent.js';
import { createVerificationAgent } from './verification-agent.js';
import { createWritingAgent } from './writing-agent.js';
import type { SkippedSource } from './sources.js';
import type { ChatModel, ModelConfig } from './model.js';
import type { Message } from '../message.js';

export * from './payloads.js';
export { createResearchAgent, type ResearchAgentOptions } from './research-agent.js';
export { createWritingAgent, type WritingAgentOptions } from './writing-agent.js';
export { createEditingAgent, type EditingAgentOptions } from './editing-agent.js';
export {
  createChatModel,
  modelConfigFromEnv,
  modelLabel,
  parseModelConfig,
  type ChatMessage,
  type ChatModel,
  type ModelConfig,
} from './model.js';
export {
  MODEL_TEXT_TOPIC_PREFIX,
  ModelTextPublisher,
  modelTextTopic,
  parseModelTextChunk,
  type ModelTextBus,
  type ModelTextChunk,
  type ModelTextPublisherOptions,
} from './model-text.js';
export { draftMessages, editWithModel, fromKeys, passageKey, revisionMessages, toKeys, writeWithModel } from './model-writer.js';
export { createVerificationAgent, readCitedSources } from './verification-agent.js';
export {
  DEFAULT_MAX_SOURCE_BYTES,
  readSource,
  sourcesRoot,
  type SkippedSource,
  type SourceRead,
  type SourceReadOptions,
} from './sources.js';
export {
  PassageIndex,
  loadSources,
  type LoadSourcesOptions,
  research,
  researchQueries,
  splitPassages,
  type SourceFile,
} from './passages.js';
export { buildOutline, composeDocument, type Outline, type OutlineSection } from './compose.js';
export { reviseDocument, write } from './revise.js';
export { editDocument, headingCase, normaliseHeadings, removeRepeats, trimToLength } from './edits.js';
export { SCORE_WEIGHTS, lengthScore, verifyDocument, type SourceLines } from './checks.js';
export { documentWords, parseDocument, renderDocument, type DocumentModel, type Reference, type Section } from './markdown.js';
export { LENGTH_TOLERANCE, keyTerms } from './text.js';

/** The names the document agents register under. */
export const DOCUMENT_AGENT_NAMES = ['research', 'writing', 'editing', 'verification'] as const;

/**
 * The sample notes shipped with the package (`samples/sources`). Resolved from this module's
 * location, which is two levels below the package root both in `src/` and in `dist/`.
 */
export function defaultSourcesDir(): string {
  return fileURLToPath(new URL('../../samples/sources/', import.meta.url));
}

/** The four document agents, ready for `bus.registerAgent(agent.name, agent)`. */
export interface DocumentAgents {
  research: Agent<ResearchResult | undefined>;
  writing: Agent<WritingResult | undefined>;
  editing: Agent<EditingResult | undefined>;
  verification: Agent<VerificationResult | undefined>;
}

/** Options of {@link createDocumentAgents}. */
export interface DocumentAgentsOptions {
  /** The notes to research and verify against (default: the bundled samples). */
  sourcesDir?: string;
  /** Largest source file read, in bytes (default 8 MiB). */
  maxSourceBytes?: number;
  /** Called for each source file research skips (too large, not text, a link leaving the folder). */
  onSkip?: (skipped: SkippedSource) => void;
  /**
   * A chat model (an OpenAI-compatible endpoint, see `ModelConfig`) the writing and editing agents
   * work through. Without one everything runs offline and deterministically. Verification stays
   * deterministic either way.
   */
  model?: ModelConfig | ChatModel;
  /**
   * Text the model streams, as it arrives, with the agent it streams for and the task being
   * handled (for a progress display in this process, or a {@link ModelTextPublisher} for one elsewhere).
   */
  onToken?: (agent: 'writing' | 'editing', text: string, task: Message) => void;
}

function withModel(
  options: DocumentAgentsOptions,
  agent: 'writing' | 'editing',
): { model?: ModelConfig | ChatModel; onToken?: (text: string, task: Message) => void } {
  if (options.model === undefined) return {};
  const onToken = options.onToken;
  return { model: options.model, ...(onToken ? { onToken: (text: string, task: Message) => onToken(agent, text, task) } : {}) };
}

/**
 * Creates the research, writing, editing and verification agents over one sources directory
 * (the sample notes by default).
 *
 * @example
 * const agents = createDocumentAgents({ sourcesDir: './notes' });
 * for (const agent of Object.values(agents)) bus.registerAgent(agent.name, agent);
 */
export function createDocumentAgents(options: DocumentAgentsOptions = {}): DocumentAgents {
  const sourcesDir = options.sourcesDir ?? defaultSourcesDir();
  const limit = options.maxSourceBytes !== undefined ? { maxSourceBytes: options.maxSourceBytes } : {};
  return {
    research: createResearchAgent({ sourcesDir, ...limit, ...(options.onSkip ? { onSkip: options.onSkip } : {}) }),
    writing: createWritingAgent(withModel(options, 'writing')),
    editing: createEditingAgent(withModel(options, 'editing')),
    verification: createVerificationAgent({ sourcesDir, ...limit }),
  };
}
