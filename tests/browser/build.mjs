// Bundles the test pages' client (mediasoup-client + socket.io-client) for
// the browser and copies the pages into dist/, which the webinar server
// serves in the browser tests.
import { build } from 'esbuild';
import { cpSync, mkdirSync } from 'node:fs';

const here = new URL('.', import.meta.url).pathname;
mkdirSync(`${here}dist`, { recursive: true });
await build({
  entryPoints: [`${here}client/pages.js`],
  bundle: true,
  format: 'iife',
  outfile: `${here}dist/client.js`,
  platform: 'browser',
  target: 'chrome120',
  logLevel: 'warning',
});
cpSync(`${here}pages`, `${here}dist`, { recursive: true });
