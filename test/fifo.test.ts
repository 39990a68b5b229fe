import t from 'tap'
import { Fifo } from '../plugin/fifo'

t.test('items come out in the order they went in, across compactions', async (t) => {
  const fifo = new Fifo<number>()
  const out: number[] = []
  let next = 0
  // Interleave pushes and shifts so the queue grows past the compaction point and drains.
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 3000; i++) fifo.push(next++)
    for (let i = 0; i < 2500; i++) out.push(fifo.shift())
  }
  while (fifo.length > 0) out.push(fifo.shift())
  t.equal(out.length, next)
  t.ok(out.every((value, i) => value === i), 'in order')
  t.equal(fifo.length, 0)
})

t.test('shift stays cheap on a long queue', async (t) => {
  // 300 000 items: quadratic shifting would take minutes; this takes milliseconds.
  const fifo = new Fifo<number>()
  for (let i = 0; i < 300_000; i++) fifo.push(i)
  let sum = 0
  while (fifo.length > 0) sum += fifo.shift()
  t.equal(sum, (300_000 * 299_999) / 2)
})
