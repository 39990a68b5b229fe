'use strict'

// Run first by `npm test`: the Redis tests start their own redis-server and the browser tests
// drive /usr/bin/chromium. When either is missing, install Debian's packages if this process
// can (root with apt-get), and otherwise stop before anything runs, with the one command that
// installs them. NO_INSTALL_PREREQUISITES=1 never installs, only checks.
const { spawnSync } = require('node:child_process')
const { accessSync, constants, readdirSync, readFileSync } = require('node:fs')
const { delimiter, join } = require('node:path')

const CHROMIUM = '/usr/bin/chromium'
const testDir = join(__dirname, '..', 'test')

const tools = [
  {
    name: 'redis-server',
    package: 'redis-server',
    find: () => onPath('redis-server'),
    wanted: /helpers\/redis|redis-server/
  },
  {
    name: `Chromium (${CHROMIUM})`,
    package: 'chromium',
    find: () => executable(CHROMIUM),
    wanted: /\/usr\/bin\/chromium|playwright-core/
  }
]

function executable (file) {
  try {
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

function onPath (name) {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && executable(join(dir, name)))
}

function testsNeeding (pattern) {
  let files
  try {
    files = readdirSync(testDir).filter((file) => file.endsWith('.test.ts')).sort()
  } catch {
    return []
  }
  return files.filter((file) => pattern.test(readFileSync(join(testDir, file), 'utf8')))
}

function installCommand (packages, root) {
  const sudo = root ? '' : 'sudo '
  return `${sudo}apt-get update && ${sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y ${packages.join(' ')}`
}

function describe (missing) {
  return missing.map((tool) => {
    const tests = testsNeeding(tool.wanted)
    return `  ${tool.name} is missing; needed by ${tests.length > 0 ? tests.map((file) => `test/${file}`).join(', ') : 'the test suite'}`
  }).join('\n')
}

function run (args) {
  const result = spawnSync('apt-get', args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    timeout: 15 * 60_000
  })
  return result.status === 0
}

function main () {
  const missing = tools.filter((tool) => !tool.find())
  if (missing.length === 0) return 0

  const packages = missing.map((tool) => tool.package)
  const root = typeof process.getuid === 'function' && process.getuid() === 0
  const canInstall = root && onPath('apt-get') && process.env.NO_INSTALL_PREREQUISITES !== '1'

  if (canInstall) {
    process.stderr.write(`Installing ${packages.join(' and ')} for the tests:\n${describe(missing)}\n`)
    if (run(['update']) && run(['install', '-y', ...packages])) {
      const still = missing.filter((tool) => !tool.find())
      if (still.length === 0) return 0
      missing.splice(0, missing.length, ...still)
    }
  }

  process.stderr.write(
    `npm test cannot run yet:\n${describe(missing)}\n` +
    `Install ${missing.length === 1 ? 'it' : 'them'} with (Debian/Ubuntu):\n\n` +
    `  ${installCommand(missing.map((tool) => tool.package), root)}\n\n` +
    'then run npm test again.\n'
  )
  return 1
}

process.exitCode = main()
