// Builds the demo page's script into the server's embedded static files. Deterministic: the
// same sources and lockfile give the same bytes (CI rebuilds it and checks for a difference).
import { build } from 'esbuild';

await build({
  entryPoints: ['demo/demo.ts'],
  bundle: true,
  format: 'iife',
  target: 'es2020',
  minify: true,
  legalComments: 'eof',
  charset: 'utf8',
  outfile: '../../src/static/coedit-demo.js',
  logLevel: 'info',
});
