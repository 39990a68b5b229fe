import type { Json } from './schema'

// Plain (unquoted) keys: simple names that no YAML version reads as a boolean, null or number.
const plainKey = /^[A-Za-z_$][A-Za-z0-9_$.-]*$/
const ambiguous = /^(?:y|n|yes|no|on|off|true|false|null)$/i

function key (name: string): string {
  return plainKey.test(name) && !ambiguous.test(name) ? name : JSON.stringify(name)
}

// A JSON string or number is also a YAML flow scalar (YAML 1.2 is a superset of JSON).
function scalar (value: Json): string | undefined {
  if (value === null || typeof value !== 'object') return JSON.stringify(value)
  if (Array.isArray(value)) return value.length === 0 ? '[]' : undefined
  return Object.keys(value).length === 0 ? '{}' : undefined
}

function lines (value: Json, indent: string, out: string[]): void {
  if (Array.isArray(value)) {
    for (const item of value) {
      const inline = scalar(item)
      if (inline !== undefined) {
        out.push(`${indent}- ${inline}`)
        continue
      }
      // The item's first line goes after the dash, the rest under it.
      const nested: string[] = []
      lines(item, `${indent}  `, nested)
      out.push(`${indent}- ${nested[0].slice(indent.length + 2)}`, ...nested.slice(1))
    }
    return
  }
  const object = value as Record<string, Json>
  for (const name of Object.keys(object)) {
    const item = object[name]
    const inline = scalar(item)
    if (inline !== undefined) {
      out.push(`${indent}${key(name)}: ${inline}`)
    } else {
      out.push(`${indent}${key(name)}:`)
      lines(item, `${indent}  `, out)
    }
  }
}

/** JSON data as YAML block style: the same data when read back by any YAML 1.2 parser. */
export function toYaml (value: Json): string {
  const inline = scalar(value)
  if (inline !== undefined) return `${inline}\n`
  const out: string[] = []
  lines(value, '', out)
  return `${out.join('\n')}\n`
}
