// A small static server for the browser demo (127.0.0.1 only). It serves the
// demo page, the browser build and tfjs's own dist bundle, nothing else.
// `npm run serve:browser` builds first; PORT picks the port (default 8080, 0 = any free port).
import {createReadStream, statSync} from 'node:fs';
import {createServer} from 'node:http';
import {dirname, extname, join, normalize, sep} from 'node:path';
import {fileURLToPath} from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// URL prefix -> folder; only these folders are reachable.
const ROUTES = {
  '/examples/browser/': 'examples/browser',
  '/dist/browser/': 'dist/browser',
  '/tfjs/': 'node_modules/@tensorflow/tfjs/dist',
};
const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json', '.json': 'application/json', '.css': 'text/css', '.png': 'image/png',
};

/** The file a URL path maps to, or null when it is outside the served folders. */
function resolvePath(urlPath) {
  if (urlPath === '/') return join(root, 'examples/browser/index.html');
  for (const [prefix, folder] of Object.entries(ROUTES)) {
    if (!urlPath.startsWith(prefix)) continue;
    const base = join(root, folder);
    const file = normalize(join(base, decodeURIComponent(urlPath.slice(prefix.length))));
    return file.startsWith(base + sep) ? file : null;
  }
  return null;
}

/** Starts the server; port 0 picks a free port. Resolves to {server, url}. */
function startServer({port = 0, host = '127.0.0.1'} = {}) {
  const server = createServer((req, res) => {
    const file = resolvePath(new URL(req.url, 'http://localhost').pathname);
    let size = -1;
    try {
      if (file != null && statSync(file).isFile()) size = statSync(file).size;
    } catch {
      // missing file: 404 below
    }
    if (size < 0) {
      res.writeHead(404, {'content-type': 'text/plain'}).end('not found\n');
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-length': size,
      'cache-control': 'no-store',
    });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const address = server.address();
      resolve({server, url: `http://${host}:${address.port}/`});
    });
  });
}

const {url} = await startServer({port: Number(process.env.PORT ?? 8080)});
// test/browser/browser.ts reads the URL from this line.
console.log(`tfjs-normalization demo: ${url}  (?backend=webgl or ?backend=cpu; Ctrl-C stops)`);
