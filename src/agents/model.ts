/**
 * A language model behind the writing and editing agents, through any OpenAI-compatible
 * chat-completions endpoint (OpenAI, Ollama, vLLM, llama.cpp's server, ...), using the `openai`
 * package (an optional peer dependency: install it to use a model). Nothing here runs unless a
 * model is configured: the default pipeline stays offline and deterministic.
 *
 * The model gets the researched passages, each with a citation key (`[P3]`), and must cite them.
 * Its text is turned into the document model with numbered citations and a reference list built
 * from the passages it cited; a key it invented stays an unresolvable citation, so verification
 * (deterministic, checking every cited span against its source) fails the draft.
 */
import { TransportError, ValidationError } from '../errors.js';

/** Where the model is and which one. */
export interface ModelConfig {
  /** The model name, e.g. `gpt-4o-mini` or `qwen2.5:7b` (Ollama). */
  model: string;
  /** Base URL of the chat-completions API, e.g. `http://127.0.0.1:11434/v1` (default: OpenAI's). */
  baseURL?: string;
  /** API key (Ollama and most local servers accept any non-empty string). */
  apiKey?: string;
  /** Sampling temperature (default 0: as repeatable as the endpoint allows). */
  temperature?: number;
  /** How long one completion may take, in ms (default 120 000). */
  timeoutMs?: number;
}

/** One chat message. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** A chat model: streams one completion, calling `onToken` for each piece of text as it arrives. */
export interface ChatModel {
  /** `model@host`, for logs and progress lines (no credentials). */
  readonly label: string;
  complete(messages: ChatMessage[], options?: { signal?: AbortSignal; onToken?: (text: string) => void }): Promise<string>;
}

/**
 * The model configuration from the environment: `CONCORD_MODEL` (the name; `name` overrides it),
 * `CONCORD_MODEL_BASE_URL` or `OPENAI_BASE_URL`, `CONCORD_MODEL_API_KEY` or `OPENAI_API_KEY`.
 * Undefined when no model is named.
 */
export function modelConfigFromEnv(name?: string, env: NodeJS.ProcessEnv = process.env): ModelConfig | undefined {
  const model = name ?? env['CONCORD_MODEL'];
  if (model === undefined || model.trim() === '') return undefined;
  const config: ModelConfig = { model: model.trim() };
  const baseURL = env['CONCORD_MODEL_BASE_URL'] ?? env['OPENAI_BASE_URL'];
  if (baseURL) config.baseURL = baseURL;
  const apiKey = env['CONCORD_MODEL_API_KEY'] ?? env['OPENAI_API_KEY'];
  if (apiKey) config.apiKey = apiKey;
  return config;
}

/** Checks a model configuration at the boundary. */
export function parseModelConfig(value: ModelConfig): ModelConfig {
  if (value === null || typeof value !== 'object')
    throw new ValidationError(`model must be an object with a \`model\` name, got \`${String(value)}\``, { field: 'model' });
  if (typeof value.model !== 'string' || value.model.trim() === '') {
    throw new ValidationError(`model.model must be a model name such as \`qwen2.5:7b\`, got \`${String(value.model)}\``, {
      field: 'model.model',
    });
  }
  if (value.baseURL !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(value.baseURL);
    } catch {
      url = undefined;
    }
    if (!url || !/^https?:$/.test(url.protocol)) {
      throw new ValidationError('model.baseURL must be an http(s) URL such as `http://127.0.0.1:11434/v1`', { field: 'model.baseURL' });
    }
  }
  if (value.temperature !== undefined && !(value.temperature >= 0 && value.temperature <= 2)) {
    throw new ValidationError(`model.temperature must be a number 0..2, got \`${String(value.temperature)}\``, {
      field: 'model.temperature',
    });
  }
  return value;
}

/** `qwen2.5:7b@127.0.0.1:11434`: which model where, without credentials or path (for logs and progress lines). */
export function modelLabel(config: ModelConfig): string {
  try {
    return `${config.model}@${new URL(config.baseURL ?? 'https://api.openai.com/v1').host}`;
  } catch {
    return config.model;
  }
}

interface OpenAIStreamChunk {
  choices?: Array<{ delta?: { content?: string | null } }>;
}
interface OpenAIClient {
  chat: {
    completions: {
      create(body: Record<string, unknown>, options?: { signal?: AbortSignal }): Promise<AsyncIterable<OpenAIStreamChunk>>;
    };
  };
}
type OpenAIConstructor = new (options: { apiKey: string; baseURL?: string; timeout?: number; maxRetries?: number }) => OpenAIClient;

let openaiModule: Promise<OpenAIConstructor> | undefined;

/** The `openai` package, loaded on first use so nobody needs it for the default run. */
async function loadOpenAI(): Promise<OpenAIConstructor> {
  openaiModule ??= import('openai').then(
    (m) => ((m as { default?: unknown }).default ?? (m as { OpenAI?: unknown }).OpenAI) as OpenAIConstructor,
    (err: unknown) => {
      openaiModule = undefined;
      throw new ValidationError('a model needs the `openai` package: npm install openai', { field: 'model', cause: err });
    },
  );
  return openaiModule;
}

/**
 * A chat model on an OpenAI-compatible endpoint, streaming.
 *
 * @example
 * const model = createChatModel({ model: 'qwen2.5:7b', baseURL: 'http://127.0.0.1:11434/v1', apiKey: 'ollama' });
 * const text = await model.complete([{ role: 'user', content: 'Say hi' }], { onToken: (t) => process.stdout.write(t) });
 */
export function createChatModel(input: ModelConfig): ChatModel {
  const config = parseModelConfig(input);
  const label = modelLabel(config);
  let client: Promise<OpenAIClient> | undefined;
  return {
    label,
    async complete(messages, options = {}) {
      client ??= loadOpenAI().then(
        (OpenAI) =>
          new OpenAI({
            apiKey: config.apiKey ?? 'not-needed',
            ...(config.baseURL ? { baseURL: config.baseURL } : {}),
            timeout: config.timeoutMs ?? 120_000,
            maxRetries: 1,
          }),
      );
      const c = await client;
      let text = '';
      try {
        const stream = await c.chat.completions.create(
          { model: config.model, messages, stream: true, temperature: config.temperature ?? 0 },
          options.signal ? { signal: options.signal } : {},
        );
        for await (const chunk of stream) {
          const piece = chunk.choices?.[0]?.delta?.content;
          if (!piece) continue;
          text += piece;
          options.onToken?.(piece);
        }
      } catch (err) {
        if (options.signal?.aborted) throw err;
        throw new TransportError(
          config.baseURL ?? 'https://api.openai.com/v1',
          `model ${config.model} failed: ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        );
      }
      if (text.trim() === '')
        throw new TransportError(config.baseURL ?? 'https://api.openai.com/v1', `model ${config.model} answered with no text`);
      return text;
    },
  };
}
