/** Observing a running system from outside: a backend observer and a Prometheus collector. */
export { BackendObserver, type BackendObserverOptions, type ObservedEvent } from './observer.js';
export { createConcordMetrics, loadPromClient, type ConcordMetrics, type ConcordMetricsOptions } from './metrics.js';
