/**
 * `concord-agents/mcp`: an MCP server that lets an LLM in any MCP client act as an agent on a Concord bus
 * and edit its versioned state. Needs the optional peer dependency `@modelcontextprotocol/sdk`.
 */
export { createMcpServer, LeasedDeliveries, LeaseLostError, DEFAULT_RECEIVE_WAIT_MS, type CreateMcpServerOptions } from './server.js';
export { serveMcpHttp, type McpHttpOptions, type McpHttpServer } from './http.js';
export { describeError, toolError } from './results.js';
export { PRIORITY_MIN, PRIORITY_MAX, MESSAGE_TYPES } from './schemas.js';
