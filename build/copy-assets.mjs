// tsc compiles TypeScript only: copy the non-TS runtime assets (Lua scripts, SQL, the dashboard page) from src/ to dist/.
import { cpSync, readdirSync, statSync, mkdirSync } from 'node:fs';
import { join, dirname, extname } from 'node:path';

const ASSETS = new Set(['.lua', '.sql']);
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (ASSETS.has(extname(name))) {
      const target = join('dist', path.slice('src/'.length));
      mkdirSync(dirname(target), { recursive: true });
      cpSync(path, target);
    }
  }
}
walk('src');
// The dashboard page is served as is (plain HTML, CSS and ES modules: no bundler).
cpSync('src/dashboard/assets', 'dist/dashboard/assets', { recursive: true });
