/**
 * `concord-agents/dashboard`: the live dashboard (a Hono app, or a server on 127.0.0.1) and the
 * Prometheus collector it serves at `/metrics`. Needs the optional peers hono and
 * @hono/node-server (and prom-client for the metrics).
 */
export { createDashboard, startDashboard, TOKEN_HEADER, type Dashboard, type DashboardOptions, type DashboardServer } from './server.js';
export { BackendObserver, type BackendObserverOptions, type ObservedEvent } from '../observability/observer.js';
export { createConcordMetrics, type ConcordMetrics, type ConcordMetricsOptions } from '../observability/metrics.js';
