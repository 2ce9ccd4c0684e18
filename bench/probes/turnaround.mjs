// Turnaround probe: in each process, the time from the last socket 'data' event to the next socket
// write, i.e. how long the process's own code takes between "the network brought something" and
// "its answer leaves". On the request/response workloads that is the client's share of the round
// trip, measured inside the process, so it is far less noisy than the round trip's p50 on a
// shared machine: compare two builds with it, alternating runs.
//
//   node --import ./bench/probes/turnaround.mjs bench/workloads/request-redis.mjs --subject concord --ns probe0001
//
// Prints one line per process at exit (stderr; `main` is the process you started): count, p10, p50, p90 in µs, after skipping the
// first 1,500 writes (connection set-up and JIT warm-up). Diagnostics only: `npm run bench`
// never loads it.
import net from 'node:net';

const role = process.argv.includes('--role') ? process.argv[process.argv.indexOf('--role') + 1] : 'main';
const SKIP = 1500;
let lastData = 0n;
let writes = 0;
const samples = [];

const emit = net.Socket.prototype.emit;
net.Socket.prototype.emit = function (event, ...rest) {
  if (event === 'data') lastData = process.hrtime.bigint();
  return emit.call(this, event, ...rest);
};
const writeGeneric = net.Socket.prototype._writeGeneric;
net.Socket.prototype._writeGeneric = function (...rest) {
  if (lastData !== 0n) {
    if (++writes > SKIP) samples.push(Number(process.hrtime.bigint() - lastData) / 1000);
    lastData = 0n;
  }
  return writeGeneric.apply(this, rest);
};

process.on('exit', () => {
  samples.sort((a, b) => a - b);
  const at = (q) => (samples.length > 0 ? samples[Math.min(samples.length - 1, Math.floor(samples.length * q))].toFixed(1) : '-');
  process.stderr.write(`turnaround ${role}: n=${samples.length} p10=${at(0.1)} p50=${at(0.5)} p90=${at(0.9)} µs\n`);
});
