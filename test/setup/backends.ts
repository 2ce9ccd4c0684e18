// Test files import core modules by path (src/bus/bus.js, src/state/manager.js), not through the
// package entry: install the backend resolvers the entry installs (URLs and the memory default).
import '../../src/connect.js';
