// emittery: async event emitter; `emit` resolves once every listener has settled (that is the ack).
import Emittery from 'emittery';

export function emitteryBus(handler) {
  const em = new Emittery();
  em.on('task', handler);
  return { send: (msg) => em.emit('task', msg) };
}
