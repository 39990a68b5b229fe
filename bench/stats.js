'use strict'

/** The median of the finite values (NaN when there are none). */
function median (values) {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** The list started `by` places on: each round runs the servers in another order. */
function rotate (list, by) {
  const n = by % list.length
  return list.slice(n).concat(list.slice(0, n))
}

module.exports = { median, rotate }
