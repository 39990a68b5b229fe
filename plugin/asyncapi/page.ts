import { readFile } from 'node:fs/promises'

/** Where `@asyncapi/react-component`'s standalone bundle and its CSS are, if it is installed. */
export interface Renderer { script: string, style: string }

export function findRenderer (resolve: (id: string) => string = require.resolve): Renderer | undefined {
  try {
    return {
      script: resolve('@asyncapi/react-component/browser/standalone/index.js'),
      style: resolve('@asyncapi/react-component/styles/default.min.css')
    }
  } catch {
    return undefined
  }
}

// Only what the page's own origin serves: no CDN, no inline script or style. The renderer
// validates the document with ajv, which compiles its validators with new Function(): hence
// 'unsafe-eval', for scripts from this origin only.
export const contentSecurityPolicy = [
  "default-src 'self'", "script-src 'self' 'unsafe-eval'", "style-src 'self'", "img-src 'self' data:",
  "connect-src 'self'", "font-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'self'"
].join('; ')

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** The page: the renderer's CSS and bundle, then the script that points it at the JSON document. */
export function pageHtml (prefix: string, title: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="${escapeHtml(prefix)}/static/default.min.css">
</head>
<body>
<div id="asyncapi"></div>
<script src="${escapeHtml(prefix)}/static/standalone.js"></script>
<script src="${escapeHtml(prefix)}/static/init.js"></script>
</body>
</html>
`
}

export function initScript (prefix: string): string {
  return `AsyncApiStandalone.render({
  schema: { url: ${JSON.stringify(`${prefix}/json`)}, options: { method: 'GET' } },
  config: { show: { sidebar: true } }
}, document.getElementById('asyncapi'))
`
}

/** Reads a file once, on first use. */
export function cachedFile (path: string): () => Promise<Buffer> {
  let content: Promise<Buffer> | undefined
  return () => {
    content ??= readFile(path)
    return content
  }
}
