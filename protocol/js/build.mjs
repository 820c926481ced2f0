// Builds the demo pages' scripts into the server's embedded static files: the text page (`/`)
// and the rich-text page (`/richtext`). Deterministic: the same sources and lockfile give the
// same bytes (CI rebuilds them and checks for a difference).
import { build } from 'esbuild';

const pages = [
  ['demo/demo.ts', '../../src/static/coedit-demo.js'],
  ['richtext/richtext.ts', '../../src/static/coedit-richtext.js'],
];

for (const [entry, outfile] of pages) {
  await build({
    entryPoints: [entry],
    bundle: true,
    format: 'iife',
    target: 'es2020',
    minify: true,
    legalComments: 'eof',
    charset: 'utf8',
    outfile,
    logLevel: 'info',
  });
}
