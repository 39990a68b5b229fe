/* global document, location, fetch, WebSocket */
// The chat page: plain JavaScript, no build step.
//
// - POST /login gives a short-lived token; the WebSocket carries it as `?token=` because a
//   browser cannot set headers on a WebSocket handshake.
// - Heartbeat: every `heartbeatIntervalMs` the page sends {type:'ping'}; if no {type:'pong'}
//   comes back within `heartbeatTimeoutMs` the connection is considered dead.
// - A dead connection, or one closed by anything but the user or an expired token, is
//   re-opened with exponential backoff (0.5 s, 1 s, 2 s, ... up to 15 s, with jitter).
// - Close code 4001 (`token expired`) is shown and sends the user back to the login form.
'use strict'

const TOKEN_EXPIRED = 4001
const BACKOFF_BASE_MS = 500
const BACKOFF_MAX_MS = 15_000

const $ = (id) => document.getElementById(id)

const session = {
  config: { heartbeatIntervalMs: 10_000, heartbeatTimeoutMs: 5_000 },
  token: '',
  name: '',
  expiresAt: 0,
  room: '',
  ws: null,
  lastId: 0, // last `said` id seen, so a reconnect only replays what was missed
  attempt: 0, // reconnect attempts since the last healthy connection
  heartbeat: null,
  pongDeadline: null,
  reconnectTimer: null,
  lastTypingSent: 0
}

// --- rendering ----------------------------------------------------------------------------

function setStatus (state, text = state) {
  $('status').dataset.state = state
  $('status').textContent = text
}

function addLine (className, ...parts) {
  const li = document.createElement('li')
  li.className = className
  for (const part of parts) li.append(part)
  const list = $('messages')
  list.append(li)
  list.scrollTop = list.scrollHeight
  return li
}

function showSaid ({ id, from, text, at }) {
  const who = document.createElement('span')
  who.className = 'from'
  who.textContent = from
  const li = addLine('said', who, text)
  li.dataset.id = String(id)
  li.title = new Date(at).toLocaleTimeString()
}

function showPresence (users) {
  const list = $('presence')
  list.replaceChildren(...users.map(({ name, typing }) => {
    const li = document.createElement('li')
    li.textContent = name
    li.dataset.name = name
    if (typing) {
      const note = document.createElement('span')
      note.className = 'typing'
      note.textContent = 'typing…'
      li.append(note)
    }
    return li
  }))
}

function showClose (code, reason) {
  // 1006 is never sent by a server: the browser reports it when the connection failed or broke
  const text = `closed: ${code} ${reason || (code === 1006 ? 'connection failed or lost' : '')}`.trim()
  $('close-info').textContent = text
  $('close-info').dataset.code = String(code)
  addLine('system', text)
}

// --- the connection -----------------------------------------------------------------------

function connect () {
  clearTimeout(session.reconnectTimer)
  if (Date.now() >= session.expiresAt) return expired('token expired')

  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
  const url = `${scheme}//${location.host}/chat/${encodeURIComponent(session.room)}` +
    `?token=${encodeURIComponent(session.token)}`
  setStatus('connecting', session.attempt > 0 ? `connecting (attempt ${session.attempt + 1})` : 'connecting')

  const ws = new WebSocket(url)
  session.ws = ws

  ws.onopen = () => {
    setStatus('open')
    $('close-info').textContent = ''
    send({ type: 'join', since: session.lastId })
    startHeartbeat()
  }

  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data)
    switch (msg.type) {
      case 'said':
        session.lastId = Math.max(session.lastId, msg.id)
        showSaid(msg)
        break
      case 'presence':
        session.attempt = 0 // joined: the connection is healthy again
        showPresence(msg.users)
        break
      case 'pong':
        clearTimeout(session.pongDeadline)
        session.pongDeadline = null
        $('latency').textContent = `${Math.round(Date.now() - msg.t)} ms`
        break
      case 'error':
        addLine('error', msg.message)
        break
    }
  }

  // A refused handshake (401, 403, ...) is not visible to the page: the browser reports an
  // `error` followed by close code 1006. Both cases end up in `onclose`.
  ws.onclose = (event) => {
    stopHeartbeat()
    session.ws = null
    showPresence([])
    showClose(event.code, event.reason)
    if (event.code === TOKEN_EXPIRED) return expired(event.reason)
    scheduleReconnect()
  }
}

function send (message) {
  if (session.ws === null || session.ws.readyState !== WebSocket.OPEN) return false
  session.ws.send(JSON.stringify(message))
  return true
}

function startHeartbeat () {
  stopHeartbeat()
  session.heartbeat = setInterval(() => {
    send({ type: 'ping', t: Date.now() })
    // the deadline runs from the oldest unanswered ping; any pong clears it
    session.pongDeadline ??= setTimeout(() => dead('no pong'), session.config.heartbeatTimeoutMs)
  }, session.config.heartbeatIntervalMs)
}

function stopHeartbeat () {
  clearInterval(session.heartbeat)
  clearTimeout(session.pongDeadline)
  session.pongDeadline = null
}

// The server stopped answering. Waiting for the close handshake of a dead link could take a
// long time, so drop the socket right away and reconnect.
function dead (why) {
  const ws = session.ws
  stopHeartbeat()
  session.ws = null
  if (ws !== null) {
    ws.onopen = ws.onmessage = ws.onclose = null
    ws.close()
  }
  showPresence([])
  addLine('system', `connection lost: ${why}`)
  scheduleReconnect()
}

function scheduleReconnect () {
  const delay = Math.min(BACKOFF_BASE_MS * 2 ** session.attempt, BACKOFF_MAX_MS) * (0.75 + Math.random() / 4)
  session.attempt++
  setStatus('reconnecting', `reconnecting in ${(delay / 1000).toFixed(1)} s`)
  session.reconnectTimer = setTimeout(connect, delay)
}

function expired (reason) {
  setStatus('expired', reason)
  addLine('system', 'Your session has expired. Log in again to continue.')
  $('login').hidden = false
  $('login-error').textContent = `Disconnected: ${reason}. Log in again.`
}

function leave () {
  clearTimeout(session.reconnectTimer)
  stopHeartbeat()
  if (session.ws !== null) {
    session.ws.onclose = null
    session.ws.close(1000, 'left')
    session.ws = null
  }
  setStatus('closed', 'left')
  $('chat').hidden = true
  $('login').hidden = false
}

// --- the forms ----------------------------------------------------------------------------

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  $('login-error').textContent = ''
  const name = $('name').value.trim()
  const res = await fetch('/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name })
  })
  const body = await res.json()
  if (!res.ok) {
    $('login-error').textContent = body.message ?? `login failed (${res.status})`
    return
  }
  const room = $('room').value.trim()
  if (session.room !== room) {
    $('messages').replaceChildren()
    session.lastId = 0
  }
  Object.assign(session, { token: body.token, name: body.name, expiresAt: body.expiresAt, room, attempt: 0 })
  $('me').textContent = body.name
  $('room-name').textContent = room
  $('login').hidden = true
  $('chat').hidden = false
  if (session.ws === null) connect()
})

$('say-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const text = $('text').value
  if (text.trim() === '') return
  if (send({ type: 'say', text })) $('text').value = ''
  else addLine('error', 'not connected, message not sent')
})

$('text').addEventListener('input', () => {
  if (Date.now() - session.lastTypingSent < 2000) return // at most one `typing` every 2 s
  if (send({ type: 'typing' })) session.lastTypingSent = Date.now()
})

$('leave').addEventListener('click', leave)

fetch('/config.json')
  .then((res) => res.json())
  .then((config) => { session.config = config })
  .catch(() => {}) // keep the defaults
