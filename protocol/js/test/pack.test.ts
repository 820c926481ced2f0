/** The npm package as a fresh clone produces it: `npm pack` in a copy of the sources (no dist/)
 * must build dist with `prepack`, ship the ESM entry and its types (and nothing else), and be
 * importable, JavaScript and TypeScript, by a project that depends on it. Runs offline: the
 * dependencies are linked from this package's node_modules. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package directory (this file runs from dist/test/). */
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

test('npm pack on a fresh checkout builds dist and yields an importable package', { timeout: 180_000 }, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'coedit-pack-'));
  try {
    // A fresh checkout: the sources, no dist/.
    const pkg = join(tmp, 'pkg');
    mkdirSync(pkg);
    for (const f of ['src', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.lib.json', 'README.md']) {
      cpSync(join(root, f), join(pkg, f), { recursive: true });
    }
    symlinkSync(join(root, 'node_modules'), join(pkg, 'node_modules'));
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', tmp], {
      cwd: pkg,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // prepack's output comes first; the JSON report is the rest.
    const report = JSON.parse(out.slice(out.search(/^\[/m))) as { filename: string; files: { path: string }[] }[];
    const files = report[0].files.map((f) => f.path).sort();
    for (const f of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/client.js', 'dist/src/textarea.d.ts', 'package.json', 'README.md']) {
      assert.ok(files.includes(f), `${f} in ${files.join(', ')}`);
    }
    assert.deepEqual(
      files.filter((f) => !/^dist\/src\/[a-z]+\.(js|d\.ts)$/.test(f) && !['package.json', 'README.md'].includes(f)),
      [],
      'nothing but the built library',
    );

    // A project that installed the tarball.
    const proj = join(tmp, 'proj');
    const modules = join(proj, 'node_modules');
    mkdirSync(join(modules, '@coedit'), { recursive: true });
    execFileSync('tar', ['-xzf', join(tmp, report[0].filename), '-C', join(modules, '@coedit')]);
    renameSync(join(modules, '@coedit', 'package'), join(modules, '@coedit', 'client'));
    for (const dep of readdirSync(join(root, 'node_modules'))) {
      if (!dep.startsWith('.')) symlinkSync(join(root, 'node_modules', dep), join(modules, dep));
    }
    const manifest = JSON.parse(readFileSync(join(modules, '@coedit/client/package.json'), 'utf8'));
    assert.equal(manifest.sideEffects, false);
    assert.equal(manifest.exports['.'].import, './dist/src/index.js');
    assert.equal(manifest.exports['.'].types, './dist/src/index.d.ts');
    writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'proj', type: 'module', private: true }));
    writeFileSync(
      join(proj, 'check.mjs'),
      `import * as m from '@coedit/client';
console.log(JSON.stringify(['CoeditClient', 'bindTextarea', 'UndoManager', 'OtState', 'refreshDelayMs'].map((k) => typeof m[k])));`,
    );
    const kinds = execFileSync(process.execPath, ['check.mjs'], { cwd: proj, encoding: 'utf8' });
    assert.deepEqual(JSON.parse(kinds), ['function', 'function', 'function', 'function', 'function']);
    // Types resolve through the exports map.
    writeFileSync(
      join(proj, 'check.ts'),
      `import { CoeditClient, type ClientOptions, type LostEvent } from '@coedit/client';
const o: ClientOptions = { url: 'ws://x/ws', doc: 'd', token: async () => 't', user: { name: 'n' } };
const lost = (e: LostEvent): string => e.text;
export const make = () => new CoeditClient(o).on('lost', lost);
`,
    );
    writeFileSync(
      join(proj, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, lib: ['ES2022', 'DOM'], types: [] },
        files: ['check.ts'],
      }),
    );
    execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', proj], { encoding: 'utf8' });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
