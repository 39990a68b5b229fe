/**
 * The environment for a child process a test starts (a server, a node of a
 * cluster, a packed-package check): the parent's, without coverage collection
 * or tap's process tracking, plus `extra`.
 */
export function childEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra }
  delete env.NODE_V8_COVERAGE
  delete env.NODE_OPTIONS
  for (const key of Object.keys(env)) if (key.startsWith('_TAPJS_')) delete env[key]
  return env
}
