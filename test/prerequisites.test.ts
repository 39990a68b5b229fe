// `npm test` first runs scripts/prerequisites.js: with redis-server or Chromium missing and no
// way to install them, it stops at once with the one command that installs them.
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { accessSync, chmodSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { childEnv } from './helpers/child'

const root = join(__dirname, '..')
const script = join(root, 'scripts', 'prerequisites.js')
const asRoot = process.getuid?.() === 0
const sudo = asRoot ? '' : 'sudo '

function hasChromium (): boolean {
  try {
    accessSync('/usr/bin/chromium', constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** A directory to use as the whole PATH, holding only `node`. */
function binDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'prerequisites-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  symlinkSync(process.execPath, join(dir, 'node'))
  return dir
}

function runScript (env: NodeJS.ProcessEnv): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [script], { cwd: root, env, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : Number(err.code ?? 1), stdout, stderr })
    })
    child.stdin?.end()
  })
}

function expectedCommand (): string {
  const packages = hasChromium() ? 'redis-server' : 'redis-server chromium'
  return `${sudo}apt-get update && ${sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y ${packages}`
}

t.test('redis-server missing and no apt-get: exits 1 at once with the install command and the tests that need it', async (t) => {
  const dir = binDir(t)
  const result = await runScript(childEnv({ PATH: dir }))
  t.equal(result.code, 1, 'exit code')
  t.equal(result.stdout, '', 'nothing on stdout: no test ran')
  t.match(result.stderr, /^npm test cannot run yet:\n/, 'says the tests did not start')
  t.match(result.stderr, 'redis-server is missing; needed by ', 'names the missing tool')
  for (const file of ['test/redis.test.ts', 'test/cluster.test.ts', 'test/topics-redis.test.ts']) {
    t.match(result.stderr, file, `names ${file} as needing redis-server`)
  }
  t.notMatch(result.stderr, /redis-server is missing; needed by [^\n]*chat-browser/, 'a browser test is not said to need redis-server')
  t.equal(result.stderr.includes('Chromium (/usr/bin/chromium) is missing'), !hasChromium(), 'Chromium is named only when it is missing')
  const commands = result.stderr.split('\n').filter((line) => line.includes('apt-get'))
  t.same(commands, [`  ${expectedCommand()}`], 'exactly one line with the one command that installs what is missing')
  t.notMatch(result.stderr, 'Installing', 'nothing was installed')
})

t.test('NO_INSTALL_PREREQUISITES=1: apt-get is never run, even as root', async (t) => {
  const dir = binDir(t)
  const marker = join(dir, 'apt-get-ran')
  writeFileSync(join(dir, 'apt-get'), `#!/bin/sh\necho "$@" >> ${marker}\nexit 0\n`)
  chmodSync(join(dir, 'apt-get'), 0o755)
  const result = await runScript(childEnv({ PATH: dir, NO_INSTALL_PREREQUISITES: '1' }))
  t.equal(result.code, 1, 'exit code')
  t.equal(existsSync(marker), false, 'apt-get was not started')
  t.match(result.stderr, `  ${expectedCommand()}\n`, 'prints the command instead')
})

t.test('as root, when apt-get cannot install (no network): it tried update then install, and exits 1 with the command', { skip: asRoot ? false : 'only root installs' }, async (t) => {
  const dir = binDir(t)
  const log = join(dir, 'apt-get.log')
  writeFileSync(join(dir, 'apt-get'), `#!/bin/sh\necho "$DEBIAN_FRONTEND $@" >> ${log}\n[ "$1" = update ] && exit 0\nexit 100\n`)
  chmodSync(join(dir, 'apt-get'), 0o755)
  const result = await runScript(childEnv({ PATH: dir }))
  t.equal(result.code, 1, 'exit code')
  const packages = hasChromium() ? 'redis-server' : 'redis-server chromium'
  t.equal(readFileSync(log, 'utf8'), `noninteractive update\nnoninteractive install -y ${packages}\n`, 'apt-get update once, then one non-interactive install')
  t.match(result.stderr, /^Installing /, 'said what it was installing')
  t.match(result.stderr, 'npm test cannot run yet:\n  redis-server is missing', 'then that redis-server is still missing')
  t.match(result.stderr, `  ${expectedCommand()}\n`, 'and the command')
})

t.test('everything present: exits 0 and prints nothing', { skip: hasChromium() ? false : 'Chromium is not installed here' }, async (t) => {
  const dir = binDir(t)
  const redis = (process.env.PATH ?? '').split(':').map((d) => join(d, 'redis-server')).find((file) => existsSync(file))
  if (redis === undefined) {
    t.fail('redis-server is not on PATH; run node scripts/prerequisites.js')
    return
  }
  symlinkSync(redis, join(dir, 'redis-server'))
  const result = await runScript(childEnv({ PATH: dir, NO_INSTALL_PREREQUISITES: '1' }))
  t.equal(result.code, 0, 'exit code')
  t.equal(result.stdout + result.stderr, '', 'no output')
})
