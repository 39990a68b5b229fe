// The chat page: an ES module, no build step. The connection is fastify-typed-websocket/client
// (served as /client.mjs): reconnects with backoff, heartbeat, resume with `since` (the highest
// message id seen in the room, kept by the client), and a refused upgrade (401 after a server
// restart or an expired token) reported, not retried.
import { connect } from '/client.mjs'

const TOKEN_EXPIRED = 4001
const TYPING_MS = 3000 // how long a `typing` message keeps the indicator on
const $ = (id) => document.getElementById(id)

let client = null
let session = null // { token, name, room }
let lastPresence = null // the names in the room at the last presence message of this connection
let lastTypingSent = 0
let users = [] // the room's members, as the last presence message listed them
const typing = new Map() // name -> timer that clears its "typing…"
let connection = 0 // counts the connections of this client: lines are marked with theirs

function addLine (className, ...parts) {
  const li = document.createElement('li')
  li.className = className
  li.append(...parts)
  const list = $('messages')
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40
  list.append(li)
  if (atBottom) list.scrollTop = list.scrollHeight
  return li
}

function span (className, text) {
  const el = document.createElement('span')
  el.className = className
  el.textContent = text
  return el
}

function showSaid ({ id, from, text, at }) {
  const time = new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
  const meta = document.createElement('div')
  meta.className = 'meta'
  meta.append(span('from', from), span('time', time))
  const li = addLine(from === session.name ? 'said mine' : 'said', meta, span('text', text))
  li.dataset.id = String(id)
  li.dataset.connection = String(connection)
  stopTyping(from)
}

// The server no longer has what this page missed: drop what this connection showed so far
// (the recent history follows, and holds it), forget the last id, and say so.
function reset () {
  for (const li of $('messages').querySelectorAll(`li.said[data-connection="${connection}"]`)) li.remove()
  client?.offsets.delete('')
  if ($('messages').children.length > 0) addLine('system', 'Some messages from while you were away are no longer available.')
}

function startTyping (name) {
  clearTimeout(typing.get(name))
  typing.set(name, setTimeout(() => stopTyping(name), TYPING_MS))
  renderPresence()
}

function stopTyping (name) {
  if (!typing.has(name)) return
  clearTimeout(typing.get(name))
  typing.delete(name)
  renderPresence()
}

function renderPresence () {
  if (session === null) return
  $('presence').replaceChildren(...users.map(({ name }) => {
    const li = document.createElement('li')
    li.dataset.name = name
    li.textContent = name === session.name ? `${name} (you)` : name
    if (typing.has(name)) li.append(span('typing', 'typing…'))
    return li
  }))
}

function showPresence (members) {
  const names = members.map((u) => u.name)
  if (lastPresence !== null) {
    for (const name of names) if (!lastPresence.includes(name)) addLine('system', `${name} joined`)
    for (const name of lastPresence) if (!names.includes(name)) addLine('system', `${name} left`)
  }
  lastPresence = names
  users = members
  renderPresence()
}

const labels = { connecting: 'connecting…', open: 'connected', reconnecting: 'reconnecting…', refused: 'refused', closed: 'offline' }

function showState (state) {
  $('status').dataset.state = state
  $('status').textContent = labels[state]
  $('text').disabled = state === 'refused' || state === 'closed'
  if (state !== 'open') {
    $('latency').textContent = '' // an old round trip says nothing about a link that is down
    $('presence').replaceChildren()
    lastPresence = null
    users = []
  } else {
    connection++
  }
}

function showLatency () {
  $('latency').textContent = client?.state === 'open' && client.rtt !== undefined ? `${client.rtt} ms` : ''
}

function showChat (visible) {
  $('login').hidden = visible
  $('chat').hidden = !visible
  for (const id of ['who', 'status', 'latency', 'leave']) $(id).hidden = !visible
}

function logout (message) {
  client?.close()
  client = null
  session = null
  for (const timer of typing.values()) clearTimeout(timer)
  typing.clear()
  users = []
  $('messages').replaceChildren()
  $('presence').replaceChildren()
  $('close-info').textContent = ''
  $('login-error').textContent = message
  showChat(false)
  $('name').focus()
}

async function login (name, room) {
  const response = await fetch('/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name })
  })
  const body = await response.json().catch(() => ({}))
  if (!response.ok) throw new Error(body.message ?? `login failed (${response.status})`)
  const config = await (await fetch('/config.json')).json()
  session = { token: body.token, name: body.name, room }
  $('login-error').textContent = ''
  $('room-name').textContent = room
  $('me').textContent = body.name
  $('messages').replaceChildren()
  showChat(true)

  client = connect({}, `/chat/${encodeURIComponent(room)}`, {
    // evaluated on every attempt: the current token and the highest message id seen in the
    // room (the client keeps it, from `offsetField`), so a reconnect gets only what was missed
    query: (c) => ({ token: session.token, since: c.offsets.get('') }),
    offsetField: 'id',
    heartbeat: { interval: config.heartbeatIntervalMs, timeout: config.heartbeatTimeoutMs },
    noReconnect: [TOKEN_EXPIRED]
  })
  const mine = client
  mine.on('said', showSaid)
  mine.on('reset', reset)
  mine.on('presence', (msg) => showPresence(msg.users))
  mine.on('typing', (msg) => startTyping(msg.name))
  mine.on('error', (msg) => addLine('error', msg.message))
  mine.on('state', (state, info) => {
    if (mine !== client) return
    showState(state)
    if (state === 'open') {
      $('close-info').textContent = ''
    } else if (state === 'reconnecting' && info.closeCode !== undefined) {
      $('close-info').textContent = `Connection lost (${info.closeCode}${info.closeReason ? ` ${info.closeReason}` : ''}); reconnecting…`
    } else if (state === 'refused') {
      logout(info.refusal.status === 401 ? 'Your session has ended. Log in again.' : `The server refused the connection (${info.refusal.status}).`)
    } else if (state === 'closed' && info.closeCode === TOKEN_EXPIRED) {
      logout('Your login has expired (token expired). Log in again.')
    }
  })
}

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const button = event.target.querySelector('button')
  button.disabled = true
  login($('name').value.trim(), $('room').value.trim())
    .catch((err) => { $('login-error').textContent = err.message })
    .finally(() => { button.disabled = false })
})

$('say-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const text = $('text').value.trim()
  if (text === '' || client === null) return
  try {
    client.send({ type: 'say', text })
    $('text').value = ''
  } catch (err) {
    addLine('error', err.message)
  }
})

$('text').addEventListener('input', () => {
  if (client?.state !== 'open' || Date.now() - lastTypingSent < 1000) return
  lastTypingSent = Date.now()
  client.send({ type: 'typing' })
})

$('leave').addEventListener('click', () => logout(''))
setInterval(showLatency, 1000)
