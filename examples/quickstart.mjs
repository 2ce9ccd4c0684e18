// Two agents talk over the bus: a planner sends a TASK, the writer reports STATUS while it
// works and returns a value, which goes back to the planner as a RESULT.
import { MessageBus, MessageType, defineAgent } from 'concord-agents';

const bus = new MessageBus();
let finish;
const finished = new Promise((resolve) => (finish = resolve));

const writer = defineAgent({
  name: 'writer',
  async handleMessage(task, ctx) {
    await ctx.send({ recipient: '', type: MessageType.STATUS, payload: { stage: 'drafting' } });
    return { draft: `Llamas hum when they are curious about ${task.payload.topic}.` };
  },
});
const planner = defineAgent({
  name: 'planner',
  handleMessage(msg) {
    console.log(`planner got a ${msg.type} from ${msg.sender}: ${msg.payload.draft}`);
    finish();
  },
});
bus.registerAgent(writer.name, writer);
bus.registerAgent(planner.name, planner);
bus.subscribe(MessageType.STATUS, (msg) => console.log(`status from ${msg.sender}: ${msg.payload.stage}`));

await bus.send({ sender: 'planner', recipient: 'writer', type: MessageType.TASK, payload: { topic: 'the moon' } });
await finished;
const { messagesSent, messagesPublished } = bus.metrics();
console.log(`sent ${messagesSent} messages and ${messagesPublished} status update`);
await bus.close();
