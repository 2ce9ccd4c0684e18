/** Public shapes of the state manager (see docs/CONTRACT.md, StateManager). */

export type ChangeAction = 'create' | 'update_content' | 'update_metadata' | 'restore' | 'merge';

export interface StateChange {
  version: number;
  timestamp: Date;
  actor: string;
  action: ChangeAction;
  /** Short human summary, e.g. `+12 -3 lines`. */
  summary?: string;
}

export interface DocumentState {
  documentId: string;
  version: number;
  content: string;
  metadata: Record<string, unknown>;
  /**
   * The most recent history entries (a bounded window, `historyWindow`); `getStateHistory`
   * pages through all that are kept. The array is the caller's own; its entries are immutable records, frozen and shared
   * between the documents that show them (their `timestamp` is a Date whose setters throw).
   */
  history: StateChange[];
  createdAt: Date;
  updatedAt: Date;
}

export interface WorkflowState {
  workflowId: string;
  /** Every stage of the workflow, in order. */
  stages: string[];
  /** The current stage, or null before the first `updateStage`. */
  stage: string | null;
  completedStages: string[];
  pendingStages: string[];
  qualityScores: Record<string, number>;
  /**
   * Starts at 1; each revision loop adds one: entering a completed stage reopens it and every
   * later completed stage (back to pending), counted once per loop.
   */
  iteration: number;
  /** Free JSON the orchestrator keeps with the workflow (document id, status, per-stage outputs). */
  data: Record<string, unknown>;
  createdAt: Date;
  updatedAt: Date;
}

export interface Snapshot {
  kind: 'concord.snapshot';
  formatVersion: 1;
  documentId: string;
  version: number;
  content: string;
  metadata: Record<string, unknown>;
  createdAt: string;
  takenAt: string;
  /** sha256 hex of the canonical JSON of every other field. */
  checksum: string;
}

export interface StateMetrics {
  activeDocuments: number;
  activeWorkflows: number;
  totalStateChanges: number;
  averageDocumentVersion: number;
}

/** A change-feed event: one per committed document version or workflow write. */
export interface ChangeEvent {
  /** Store-wide, strictly increasing: the cursor to resume a feed from. */
  revision: number;
  kind: 'document' | 'workflow';
  /** documentId or workflowId. */
  id: string;
  /** Document version, or workflow write count. */
  version: number;
  action: ChangeAction | 'workflow_update' | 'workflow_create';
  actor?: string;
  timestamp: Date;
}
