// The AsyncAPI plugin from its TypeScript source, typed as the published subpath.
import type PublishedAsyncapi = require('fastify-typed-websocket/asyncapi')
import { Parser } from '@asyncapi/parser'

const source = require('../../plugin/asyncapi/index') as typeof PublishedAsyncapi

export default source

/** What `@asyncapi/parser` reports as errors (severity 0) for a document, one line each. */
export async function asyncapiErrors (document: unknown): Promise<string[]> {
  const diagnostics = await new Parser().validate(document as never)
  return diagnostics.filter((d) => d.severity === 0).map((d) => `${d.code}: ${d.message} at /${d.path.join('/')}`)
}
