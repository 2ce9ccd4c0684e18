// node:events EventEmitter as a bus: dispatch is a synchronous call; the handler is async and
// "ack" is its promise settling. No queue, no priorities, no retries: the floor of in-process dispatch.
import { EventEmitter } from 'node:events';

export function eventEmitterBus(handler, onAck) {
  const ee = new EventEmitter();
  ee.on('task', (msg) => {
    handler(msg).then(onAck);
  });
  return {
    send: (msg) => {
      ee.emit('task', msg);
    },
  };
}

/**
 * Request/response over an EventEmitter with a correlation-id map and a timeout per request:
 * what a user writes by hand for in-process request/reply.
 */
export function eventEmitterRpc(handler, { timeoutMs = 5000 } = {}) {
  const ee = new EventEmitter();
  const pending = new Map();
  let seq = 0;
  ee.on('request', async (msg) => {
    const payload = await handler(msg);
    ee.emit('reply', {
      id: String(++seq),
      inReplyTo: msg.id,
      sender: msg.recipient,
      recipient: msg.sender,
      type: 'result',
      payload,
      correlationId: msg.correlationId,
    });
  });
  ee.on('reply', (reply) => {
    const p = pending.get(reply.inReplyTo);
    if (p === undefined) return;
    pending.delete(reply.inReplyTo);
    clearTimeout(p.timer);
    p.resolve(reply);
  });
  return {
    request(msg) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(msg.id);
          reject(new Error(`request ${msg.id} timed out`));
        }, timeoutMs);
        pending.set(msg.id, { resolve, timer });
        ee.emit('request', msg);
      });
    },
  };
}
