/**
 * The bus part of `concord`: the MessageBus, its types, the communication protocol and the
 * runtime helpers it is built from. Re-exported by the package root.
 */
export {
  MessageBus,
  type MessageBusOptions,
  type SendInput,
  type PublishInput,
  type RequestInput,
  type ReceiveOptions,
  type ReplyOptions,
  type CloseOptions,
  type Delivery,
  type Subscription,
  type SubscriptionHandler,
  type BusMetrics,
  type AgentMetrics,
  type DeadLetter,
  type DeadLetterReason,
} from './bus.js';
export { CommunicationProtocol } from './protocol.js';
export { backoffDelay, resolveBackoff, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';
export { LatencyRecorder, percentile, type LatencySummary } from './latency.js';
export { validateAgentName } from './agent.js';
