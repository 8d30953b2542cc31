// The README's quick start pastes and runs: its first js block, run as a module of this package.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync, rmSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const here = path.dirname(fileURLToPath(import.meta.url))

test("the README's quick start runs", () => {
  const readme = readFileSync(path.join(here, '..', 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Quick start'))
  const code = /```js\n([\s\S]*?)```/.exec(section)[1]
  const file = path.join(here, '..', `.readme-quickstart-${process.pid}.mjs`)
  writeFileSync(file, code)
  try {
    const out = execFileSync(process.execPath, [file], { encoding: 'utf8' })
    assert.match(out, /token until/)
    assert.match(out, /mints: 1/)
    assert.ok(!/crs_[0-9a-f]{8}/.test(out), 'the quick start prints no whole token')
  } finally {
    rmSync(file, { force: true })
  }
})
