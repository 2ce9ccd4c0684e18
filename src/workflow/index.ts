/** The durable orchestrator and the workflow definitions it runs. */
export {
  Orchestrator,
  readData as readWorkflowData,
  type OrchestratorOptions,
  type OrchestratorState,
  type OrchestratorHooks,
  type StartOptions,
} from './orchestrator.js';
export {
  documentPipeline,
  DOCUMENT_PIPELINE,
  type DocumentPipelineOptions,
  type DocumentPipelineInput,
} from './document-pipeline.js';
export type {
  WorkflowDefinition,
  StageDefinition,
  StageContext,
  StageRequest,
  StageResult,
  StageRecord,
  StepRecord,
  Feedback,
  WorkflowData,
  WorkflowStatus,
  WorkflowOutcome,
  WorkflowEvent,
  OrchestratorBus,
  Json,
} from './types.js';
