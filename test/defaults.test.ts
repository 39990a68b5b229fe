// plugin/defaults.ts: the one table of option defaults. The code reads it; here the
// option table of docs/reference.md is checked against it, row by row.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { connectionDefaults, pluginDefaults, redisDefaults, topicDefaults } from '../plugin/defaults'
import { resolvePluginOptions } from '../plugin/options'

const MiB = 1024 * 1024
// Options whose default is "off" or follows another option: how the reference says it.
const described: Record<string, string> = {
  pingTimeout: '= `pingInterval`',
  checkOrigin: 'same host',
  maxPendingBytes: '= `maxMessageSize`',
  subprotocols: 'none',
  selectSubprotocol: 'none',
  maxConnections: 'unlimited',
  rateLimit: 'none',
  requestTimeout: 'none'
}
// A plugin option whose default is made when the plugin is registered (a MemoryBroker per
// app), not a value of the table.
const made: Record<string, string> = { broker: 'in memory' }
const bytes = new Set(['maxMessageSize', 'maxBufferedAmount', 'maxBufferedTotal'])
const milliseconds = new Set(['pingInterval', 'closeTimeout'])

/** A default as the reference's table writes it. */
function asWritten (name: string, value: unknown): string {
  if (name in described) return described[name] as string
  if (typeof value === 'boolean') return `\`${String(value)}\``
  if (typeof value !== 'number') throw new Error(`${name}: no way to write ${String(value)}`)
  if (bytes.has(name)) return `${value / MiB} MiB`
  if (milliseconds.has(name)) return `${value} ms`
  return String(value)
}

/** The reference's option table: the rows between `| option | default | meaning |` and the first line that is not a row. */
function referenceOptions (): Map<string, string> {
  const lines = readFileSync(join(__dirname, '..', 'docs', 'reference.md'), 'utf8').split('\n')
  const start = lines.indexOf('| option | default | meaning |')
  if (start === -1) throw new Error('docs/reference.md has no option table')
  const rows = new Map<string, string>()
  for (let i = start + 2; i < lines.length && (lines[i] as string).startsWith('|'); i++) {
    const cells = (lines[i] as string).split(' | ')
    const name = /^\| `(\w+)`$/.exec(cells[0] as string)?.[1]
    if (name === undefined) throw new Error(`docs/reference.md option table: cannot read ${lines[i] as string}`)
    if (rows.has(name)) throw new Error(`docs/reference.md option table: ${name} twice`)
    rows.set(name, cells[1] as string)
  }
  return rows
}

t.test('the reference lists every option of the table once, with its default', async (t) => {
  const table: Record<string, unknown> = { ...connectionDefaults, ...pluginDefaults }
  const reference = referenceOptions()
  t.strictSame([...reference.keys()].sort(), [...Object.keys(table), ...Object.keys(made)].sort(), 'the same options')
  for (const [name, value] of Object.entries(table)) {
    t.equal(reference.get(name), asWritten(name, value), name)
  }
  for (const [name, written] of Object.entries(made)) t.equal(reference.get(name), written, name)
})

t.test('what the reference says in words holds in the table', async (t) => {
  t.equal(connectionDefaults.pingTimeout, connectionDefaults.pingInterval, 'pingTimeout follows pingInterval')
  for (const name of ['checkOrigin', 'maxPendingBytes', 'subprotocols', 'selectSubprotocol', 'maxConnections', 'rateLimit', 'requestTimeout'] as const) {
    t.equal(connectionDefaults[name], undefined, `${name} is off unless given`)
  }
})

t.test('the tables are frozen, and resolving options starts from them', async (t) => {
  for (const table of [connectionDefaults, pluginDefaults, topicDefaults, redisDefaults]) t.ok(Object.isFrozen(table))
  t.strictSame(resolvePluginOptions(undefined), { ...connectionDefaults })
  t.equal(resolvePluginOptions({ pingInterval: 1000 }).pingTimeout, 1000, 'pingTimeout follows a pingInterval given')
})

t.test('the declarations (types/index.d.ts) state the same defaults', async (t) => {
  const source = readFileSync(join(__dirname, '..', 'types', 'index.d.ts'), 'utf8')
  const table: Record<string, unknown> = { ...connectionDefaults, ...pluginDefaults }
  for (const [name, value] of Object.entries(table)) {
    // The doc comment right before the option's declaration.
    const found = new RegExp(`/\\*\\*((?:(?!\\*/)[\\s\\S])*)\\*/\\s*${name}\\?:`).exec(source)
    t.ok(found, `${name} is declared with a doc comment`)
    const doc = (found?.[1] ?? '').replace(/\s*\n\s*\*\s*/g, ' ')
    const stated = /Default:? ([^.]+)\./.exec(doc)?.[1]
    if (name in described) {
      // Off or following another option: said in words, never as a number.
      t.ok(stated !== undefined && !/^\d/.test(stated), `${name}: "${stated}" (no value of its own)`)
      continue
    }
    const expected = typeof value === 'boolean' ? `\`${String(value)}\`` : bytes.has(name) ? `${value as number / MiB} MiB` : String(value)
    t.equal(stated, expected, `${name}: Default ${expected}`)
  }
})
