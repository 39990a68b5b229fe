// The chat page: an ES module, no build step. The connection is fastify-typed-websocket/client
// (served as /client.mjs): reconnects with backoff, heartbeat, resume with `since` (the highest
// message id seen in the room, kept by the client), and a refused upgrade (401 after a server
// restart or an expired token) reported, not retried. Older messages and moving to another
// room are calls (`client.call()`), answered beside the messages on the same connection.
import { connect } from '/client.mjs'

const TOKEN_EXPIRED = 4001
const TYPING_MS = 3000 // how long a `typing` message keeps the indicator on
const OLDER = 50 // messages one click on "Load older messages" asks for
const CALL_MS = 5000 // how long a call may take before the page gives up on it
const $ = (id) => document.getElementById(id)

let client = null
let session = null // { token, name, room }
let lastPresence = null // the names in the room at the last presence message of this connection
let lastTypingSent = 0
let users = [] // the room's members, as the last presence message listed them
const typing = new Map() // name -> timer that clears its "typing…"
let connection = 0 // counts the connections of this client: lines are marked with theirs
// What this page sent and the server has not echoed yet, oldest first: { text, li }. They stay
// (marked "sending…") through reconnects, and a refused session sends them after the next login.
let pending = []

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

function saidParts ({ from, text, at }) {
  const time = new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
  const meta = document.createElement('div')
  meta.className = 'meta'
  meta.append(span('from', from), span('time', time))
  return [meta, span('text', text)]
}

function showSaid (said) {
  const { id, from, text } = said
  // the server has it: the oldest pending line with this text becomes the message, where it stands
  const waiting = from === session.name ? pending.findIndex((p) => p.text === text) : -1
  let li
  if (waiting === -1) {
    li = addLine(from === session.name ? 'said mine' : 'said', ...saidParts(said))
  } else {
    li = pending[waiting].li
    pending.splice(waiting, 1)
    li.className = 'said mine'
    li.replaceChildren(...saidParts(said))
  }
  li.dataset.id = String(id)
  li.dataset.connection = String(connection)
  stopTyping(from)
}

// The server no longer has what this page missed: drop what this connection showed so far
// (the recent history follows, and holds it), forget the last id, and say so.
function reset () {
  // after a restart: learn the new process's epoch, so the next reconnect can resume
  fetch('/config.json').then((r) => r.json()).then((c) => { if (session !== null) session.epoch = c.epoch }, () => {})
  for (const li of $('messages').querySelectorAll(`li.said[data-connection="${connection}"]`)) li.remove()
  // still waiting: keep them last, after the history that follows
  for (const { li } of pending) $('messages').append(li)
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

/** Shows `text` as sent but not yet confirmed, and sends it (now, or once reconnected). */
function say (text) {
  client.send({ type: 'say', text })
  const meta = document.createElement('div')
  meta.className = 'meta'
  meta.append(span('time', 'sending…'))
  pending.push({ text, li: addLine('pending mine', meta, span('text', text)) })
}

/** Keeps the unsent messages for the next login with the same name and room; says so. */
function keepPending () {
  if (pending.length === 0) return ''
  for (const p of pending) Object.assign(p, { name: session.name, room: session.room, kept: true })
  const what = pending.length === 1 ? 'Your unsent message is' : `Your ${pending.length} unsent messages are`
  return ` ${what} sent once you are back in ${session.room}.`
}

function logout (message) {
  client?.close()
  client = null
  session = null
  pending = pending.filter((p) => p.kept)
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
  session = { token: body.token, name: body.name, room, epoch: config.epoch }
  $('login-error').textContent = ''
  $('room-name').textContent = room
  $('me').textContent = body.name
  $('messages').replaceChildren()
  $('load-older').hidden = false
  $('room-error').textContent = ''
  showChat(true)
  // messages that a refused session did not get to send: the same name in the same room sends them now
  const unsent = pending.filter((p) => p.name === body.name && p.room === room).map((p) => p.text)
  pending = []

  client = connect({}, `/chat/${encodeURIComponent(room)}`, {
    // evaluated on every attempt: the current token and the highest message id seen in the
    // room (the client keeps it, from `offsetField`), so a reconnect gets only what was missed
    // (and the server's epoch those ids belong to: a restarted server numbers rooms afresh)
    query: (c) => ({ token: session.token, since: c.offsets.get(''), epoch: session.epoch }),
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
  for (const text of unsent) say(text)
  mine.on('state', (state, info) => {
    if (mine !== client) return
    showState(state)
    if (state === 'open') {
      $('close-info').textContent = ''
    } else if (state === 'reconnecting' && info.closeCode !== undefined) {
      $('close-info').textContent = `Connection lost (${info.closeCode}${info.closeReason ? ` ${info.closeReason}` : ''}); reconnecting…`
    } else if (state === 'refused') {
      const { status } = info.refusal
      const message = status === 401
        ? 'Your session has ended. Log in again.'
        : status === 409 ? `${session.room} is full. Try another room.` : `The server refused the connection (${status}).`
      logout(message + keepPending())
    } else if (state === 'closed' && info.closeCode === TOKEN_EXPIRED) {
      logout('Your login has expired (token expired). Log in again.' + keepPending())
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
    say(text)
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

// Older messages: the `history` call, for the ones before the oldest shown, put above it in order.
$('load-older').addEventListener('click', async () => {
  const button = $('load-older')
  const oldest = $('messages').querySelector('li.said[data-id]')
  const before = oldest === null ? undefined : Number(oldest.dataset.id)
  const room = session.room
  button.disabled = true
  try {
    const older = await client.call('history', { room, before, limit: OLDER }, { timeout: CALL_MS })
    if (session?.room !== room) return
    const first = $('messages').firstChild
    for (const said of older) {
      const li = document.createElement('li')
      li.className = said.from === session.name ? 'said mine' : 'said'
      li.append(...saidParts(said))
      li.dataset.id = String(said.id)
      li.dataset.connection = String(connection)
      $('messages').insertBefore(li, first)
    }
    if (older.length < OLDER) {
      button.hidden = true
      const li = document.createElement('li')
      li.className = 'system'
      li.textContent = 'No older messages.'
      $('messages').prepend(li)
    }
  } catch (err) {
    addLine('error', `Older messages could not be loaded: ${err.message}`)
  } finally {
    button.disabled = false
  }
})

// Another room: `join` says whether it has room before the page moves there; a full room is
// the app error `room_full`, shown here, and the page stays where it is, still connected.
$('room-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const room = $('other-room').value.trim()
  if (room === '' || client === null || room === session.room) return
  const button = event.target.querySelector('button')
  button.disabled = true
  $('room-error').textContent = ''
  try {
    await client.call('join', { room }, { timeout: CALL_MS })
    const { name } = session
    client.close()
    client = null
    $('other-room').value = ''
    await login(name, room)
  } catch (err) {
    if (client?.isRemoteError(err, 'join') && err.name === 'room_full') {
      $('room-error').textContent = `${room} is full (${err.data.capacity} ${err.data.capacity === 1 ? 'person' : 'people'}). You are still in ${session.room}.`
    } else {
      $('room-error').textContent = `Could not go to ${room}: ${err.message}`
    }
  } finally {
    button.disabled = false
  }
})

$('leave').addEventListener('click', () => logout(''))
setInterval(showLatency, 1000)
