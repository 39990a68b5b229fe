// The YAML form of the document: JSON data in block style that YAML parsers read back unchanged.
import t from 'tap'
import { parse } from 'yaml'
import { toYaml } from '../plugin/asyncapi/yaml'

t.test('JSON data round-trips through a YAML parser', async (t) => {
  const cases: unknown[] = [
    { asyncapi: '3.0.0', info: { title: 'Chat', version: '1.0.0' } },
    { no: 'yes', y: 'n', on: 'off', true: 'false', null: '~', '': true, 1: 1, 'a b': 'c: d', '#x': '- item' },
    { list: [[1, [2, {}]], { x: [], y: { z: 'line\nbreak "quoted" \\ tab\t\u2028' } }, null, -1.5e-7, 0, false], empty: {} },
    { deep: [{ a: [{ b: [[[]]] }] }], unicode: 'Zürich ✓ 😀' },
    [1, 'two', { three: 3 }],
    'a plain string', 42, null, [], {}
  ]
  for (const [i, value] of cases.entries()) {
    const yaml = toYaml(value as never)
    t.same(parse(yaml), value, `case ${i}`)
    t.ok(yaml.endsWith('\n'))
  }
})

t.test('block style, two spaces per level, list items under their key', async (t) => {
  t.equal(toYaml({ channels: { chat: { address: '/chat/{room}', tags: ['a', { name: 'b' }] } }, empty: [] }), [
    'channels:',
    '  chat:',
    '    address: "/chat/{room}"',
    '    tags:',
    '      - "a"',
    '      - name: "b"',
    'empty: []',
    ''
  ].join('\n'))
})
