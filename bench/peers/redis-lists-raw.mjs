// The Redis round-trip limit for request/response: the requester LPUSHes a request (carrying
// its reply list) and BRPOPs its reply list; the responder BLPOPs the request list and LPUSHes
// the reply. Two blocking list operations and two pushes per round trip, nothing else.
import { redisClient } from '../lib/common.mjs';

const requestKey = (ns) => `bench:${ns}:requests`;
const replyKey = (ns) => `bench:${ns}:replies:planner`;

export async function startResponder(ns, respond) {
  const r = await redisClient();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const res = await r.blpop(requestKey(ns), 0.1);
      if (!res) continue;
      const msg = JSON.parse(res[1]);
      const payload = await respond(msg);
      await r.lpush(
        msg.replyTo,
        JSON.stringify({
          id: `r${msg.id}`,
          type: 'result',
          sender: msg.recipient,
          recipient: msg.sender,
          inReplyTo: msg.id,
          correlationId: msg.correlationId,
          payload,
        }),
      );
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    r.disconnect();
  };
}

export async function requester(ns) {
  const r = await redisClient();
  const replies = replyKey(ns);
  return {
    async request(msg) {
      await r.lpush(requestKey(ns), JSON.stringify({ ...msg, replyTo: replies }));
      const res = await r.brpop(replies, 5);
      if (!res) throw new Error(`request ${msg.id} timed out`);
      const reply = JSON.parse(res[1]);
      if (reply.inReplyTo !== msg.id) throw new Error(`reply to ${reply.inReplyTo}, expected ${msg.id}`);
      return reply;
    },
    close: () => r.quit(),
  };
}
