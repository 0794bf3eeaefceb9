// Smoke test of the browser itself, independent of Vigie: can headless
// Chromium on this machine draw WebGL, and do the vendored libraries
// (crates/server/assets/vendor) load and work under the console's
// Content-Security-Policy? A failure here means "the browser or the vendored
// files", not a console bug.
//
// A static node:http server serves a temp dir with the console's CSP header
// and the vendored files under the console's paths
// (/console/assets/vendor/<package>/<file>), so the HTML below is exactly the
// snippet the console uses.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  CONSOLE_CSP,
  VENDOR_DIR,
  cspViolations,
  launchBrowser,
  newPage,
  screenshot,
  waitFor,
} from './harness.mjs';

const HEAD = `<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<title>Vigie — smoke</title>
<meta name="htmx-config" content='{"includeIndicatorStyles":false,"allowEval":false}'>
<link rel="stylesheet" href="/console/assets/vendor/maplibre-gl/maplibre-gl.css">
<link rel="stylesheet" href="/console/assets/vendor/uplot/uPlot.min.css">
<link rel="stylesheet" href="/smoke.css">
<script src="/console/assets/vendor/htmx.org/htmx.min.js"></script>
<script src="/console/assets/vendor/pmtiles/pmtiles.js"></script>
<script src="/console/assets/vendor/uplot/uPlot.iife.min.js"></script>
<script type="module" src="/smoke.mjs"></script>
</head>
<body>
<div id="map"></div>
<div id="chart"></div>
</body>
</html>
`;

const CSS = `html,body{margin:0;height:100%}
#map{position:absolute;top:0;left:0;width:800px;height:600px}
#chart{position:absolute;top:0;left:810px;width:400px;height:300px}
`;

// The page: ?mode=circle draws a background and one GeoJSON circle;
// ?mode=libs adds a vector layer read from a PMTiles archive through the
// pmtiles protocol, and draws a uPlot chart.
const SMOKE_JS = `import * as maplibregl from '/console/assets/vendor/maplibre-gl/maplibre-gl.mjs';

const mode = new URLSearchParams(location.search).get('mode') || 'circle';
const style = {
  version: 8,
  sources: {
    lights: {
      type: 'geojson',
      data: {
        type: 'FeatureCollection',
        features: [{ type: 'Feature', id: 1, properties: { status: 'on' },
                     geometry: { type: 'Point', coordinates: [0, 0] } }],
      },
    },
  },
  layers: [
    { id: 'background', type: 'background', paint: { 'background-color': '#102040' } },
    { id: 'lights', type: 'circle', source: 'lights',
      paint: { 'circle-radius': 24, 'circle-color': '#e01b24',
               'circle-stroke-width': 2, 'circle-stroke-color': '#ffffff' } },
  ],
};
if (mode === 'libs') {
  const protocol = new pmtiles.Protocol();
  maplibregl.addProtocol('pmtiles', protocol.tile);
  style.sources.land = { type: 'vector', url: 'pmtiles://' + location.origin + '/smoke.pmtiles' };
  style.layers.splice(1, 0, { id: 'land', type: 'fill', source: 'land', 'source-layer': 'land',
                              paint: { 'fill-color': '#26a269' } });
}
const map = new maplibregl.Map({
  container: 'map',
  style,
  center: [0, 0],
  zoom: 1,
  attributionControl: false,
  canvasContextAttributes: { preserveDrawingBuffer: true },
});
map.on('error', (e) => console.error('map error: ' + (e.error && e.error.message)));
map.once('idle', () => { document.body.dataset.idle = '1'; });

// The RGBA pixel under a longitude/latitude (the drawing buffer is kept).
function pixelAt(lngLat) {
  const p = map.project(lngLat);
  const c = map.getCanvas();
  const r = c.width / c.clientWidth;
  const copy = document.createElement('canvas');
  copy.width = c.width;
  copy.height = c.height;
  const ctx = copy.getContext('2d');
  ctx.drawImage(c, 0, 0);
  return Array.from(ctx.getImageData(Math.round(p.x * r), Math.round(p.y * r), 1, 1).data);
}

let chart = null;
if (mode === 'libs') {
  const xs = [0, 1, 2, 3, 4, 5], ys = [3, 1, 4, 1, 5, 9];
  chart = new uPlot({ width: 400, height: 300, series: [{}, { label: 'W', stroke: '#e01b24' }] },
                    [xs, ys], document.getElementById('chart'));
}
window.smoke = { map, pixelAt, maplibregl, chart, htmxVersion: window.htmx && window.htmx.version };
`;

// ---- A one-tile PMTiles v3 archive, written by hand: a "land" layer with a
// square polygon in the middle of the z0 tile (lon -90..90). ----

function varint(n) {
  const out = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}
const zigzag = (n) => (n << 1) ^ (n >> 31);
const field = (num, wire) => varint((num << 3) | wire);
const bytesField = (num, bytes) => [...field(num, 2), ...varint(bytes.length), ...bytes];

function mvtSquare() {
  const cmd = (id, count) => (id & 7) | (count << 3);
  // Exterior ring, positive area in tile coordinates (y down).
  const pts = [[1024, 1024], [3072, 1024], [3072, 3072], [1024, 3072]];
  const geom = [cmd(1, 1), zigzag(pts[0][0]), zigzag(pts[0][1]), cmd(2, 3)];
  for (let i = 1; i < pts.length; i++) {
    geom.push(zigzag(pts[i][0] - pts[i - 1][0]), zigzag(pts[i][1] - pts[i - 1][1]));
  }
  geom.push(cmd(7, 1));
  const packed = geom.flatMap(varint);
  const feature = [...field(1, 0), ...varint(1), ...field(3, 0), ...varint(3), ...bytesField(4, packed)];
  const layer = [
    ...field(15, 0), ...varint(2),
    ...bytesField(1, [...Buffer.from('land')]),
    ...bytesField(2, feature),
    ...field(5, 0), ...varint(4096),
  ];
  return Buffer.from(bytesField(3, layer));
}

function pmtilesArchive() {
  const tile = mvtSquare();
  // Root directory: one entry (tile id 0, run length 1, length, offset 0).
  const dir = Buffer.from([...varint(1), ...varint(0), ...varint(1), ...varint(tile.length), ...varint(1)]);
  const meta = Buffer.from(JSON.stringify({ vector_layers: [{ id: 'land', fields: {} }] }));
  const h = Buffer.alloc(127);
  h.write('PMTiles', 0, 'latin1');
  h.writeUInt8(3, 7);
  const dirOff = 127, metaOff = dirOff + dir.length, dataOff = metaOff + meta.length;
  const u64 = (v, at) => h.writeBigUInt64LE(BigInt(v), at);
  u64(dirOff, 8); u64(dir.length, 16);
  u64(metaOff, 24); u64(meta.length, 32);
  u64(0, 40); u64(0, 48);
  u64(dataOff, 56); u64(tile.length, 64);
  u64(1, 72); u64(1, 80); u64(1, 88);
  h.writeUInt8(1, 96); // clustered
  h.writeUInt8(1, 97); // internal compression: none
  h.writeUInt8(1, 98); // tile compression: none
  h.writeUInt8(1, 99); // tile type: MVT
  h.writeUInt8(0, 100); h.writeUInt8(0, 101); // min, max zoom
  h.writeInt32LE(-1800000000, 102); h.writeInt32LE(-850000000, 106);
  h.writeInt32LE(1800000000, 110); h.writeInt32LE(850000000, 114);
  h.writeUInt8(0, 118); h.writeInt32LE(0, 119); h.writeInt32LE(0, 123);
  return Buffer.concat([h, dir, meta, tile]);
}

// ---- The static server: the console's CSP, JavaScript MIME for .mjs (module
// scripts and module workers need it), byte ranges (PMTiles reads ranges). ----

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.pmtiles': 'application/vnd.pmtiles',
};

function serve(root, csp) {
  const requests = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    requests.push(url.pathname);
    const rel = url.pathname === '/' ? 'index.html' : decodeURIComponent(url.pathname).replace(/^\/+/, '');
    const file = path.resolve(root, rel);
    let body;
    try {
      if (!file.startsWith(root + path.sep)) throw new Error('outside');
      body = readFileSync(file);
    } catch {
      res.writeHead(404, { 'Content-Security-Policy': csp }).end('not found');
      return;
    }
    const headers = {
      'Content-Security-Policy': csp,
      'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'no-store',
    };
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '');
    if (range) {
      const start = Number(range[1]);
      const end = Math.min(range[2] ? Number(range[2]) : body.length - 1, body.length - 1);
      if (start >= body.length) {
        res.writeHead(416, { ...headers, 'Content-Range': `bytes */${body.length}` }).end();
        return;
      }
      res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${body.length}` });
      res.end(body.subarray(start, end + 1));
      return;
    }
    res.writeHead(200, headers).end(body);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, requests, base: `http://127.0.0.1:${server.address().port}` }));
  });
}

let dir;
let site;
let browser;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'vigie-webgl-'));
  cpSync(VENDOR_DIR, path.join(dir, 'console/assets/vendor'), { recursive: true });
  writeFileSync(path.join(dir, 'index.html'), HEAD);
  writeFileSync(path.join(dir, 'smoke.css'), CSS);
  writeFileSync(path.join(dir, 'smoke.mjs'), SMOKE_JS);
  writeFileSync(path.join(dir, 'smoke.pmtiles'), pmtilesArchive());
  site = await serve(dir, process.env.VIGIE_SMOKE_CSP || CONSOLE_CSP);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await new Promise((r) => (site ? site.server.close(r) : r()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const near = (rgba, [r, g, b], tol = 40) =>
  Math.abs(rgba[0] - r) <= tol && Math.abs(rgba[1] - g) <= tol && Math.abs(rgba[2] - b) <= tol;

test('headless Chromium has WebGL 2', { timeout: 60000 }, async () => {
  const { context, page } = await newPage(browser);
  try {
    const gl = await page.evaluate(() => {
      const c = document.createElement('canvas');
      const ctx = c.getContext('webgl2');
      if (!ctx) return null;
      const info = ctx.getExtension('WEBGL_debug_renderer_info');
      return info ? ctx.getParameter(info.UNMASKED_RENDERER_WEBGL) : ctx.getParameter(ctx.RENDERER);
    });
    console.log(`WebGL 2 renderer: ${gl}`);
    assert.ok(gl, 'no WebGL 2 context: check the Chromium flags in harness.mjs (SwiftShader)');
  } finally {
    await context.close();
  }
});

test('vendored maplibre draws a background and a GeoJSON circle under the console CSP', { timeout: 60000 }, async (t) => {
  const { context, page, errors } = await newPage(browser);
  try {
    await page.goto(`${site.base}/?mode=circle`);
    await page.waitForSelector('body[data-idle="1"]', { state: 'attached', timeout: 30000 });
    await screenshot(page, t.name);
    const centre = await page.evaluate(() => window.smoke.pixelAt([0, 0]));
    const corner = await page.evaluate(() => window.smoke.pixelAt(window.smoke.map.unproject([20, 20])));
    console.log(`pixel at the circle ${centre}, in a corner ${corner}`);
    assert.ok(near(centre, [0xe0, 0x1b, 0x24]), `the circle is not drawn (pixel ${centre})`);
    assert.ok(near(corner, [0x10, 0x20, 0x40]), `the background is not drawn (pixel ${corner})`);
    assert.ok(
      site.requests.some((p) => p.startsWith('/console/assets/vendor/maplibre-gl/maplibre-gl-worker.mjs')),
      `maplibre did not load its worker from beside maplibre-gl.mjs: ${site.requests.join(', ')}`,
    );
    assert.deepEqual(await cspViolations(page), []);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('pmtiles protocol, uPlot and htmx work under the console CSP', { timeout: 60000 }, async (t) => {
  const { context, page, errors } = await newPage(browser);
  try {
    await page.goto(`${site.base}/?mode=libs`);
    await page.waitForSelector('body[data-idle="1"]', { state: 'attached', timeout: 30000 });
    await waitFor(() => page.evaluate(() => window.smoke.map.areTilesLoaded()), { what: 'PMTiles tiles' });
    await screenshot(page, t.name);
    const land = await page.evaluate(() => window.smoke.pixelAt([60, 20]));
    const sea = await page.evaluate(() => window.smoke.pixelAt(window.smoke.map.unproject([20, 20])));
    console.log(`pixel on the PMTiles square ${land}, outside ${sea}`);
    assert.ok(near(land, [0x26, 0xa2, 0x69]), `the PMTiles layer is not drawn (pixel ${land})`);
    assert.ok(near(sea, [0x10, 0x20, 0x40]), `the background is not drawn (pixel ${sea})`);
    assert.ok(site.requests.includes('/smoke.pmtiles'), 'the archive was not read');
    const chart = await page.evaluate(() => document.querySelectorAll('#chart .uplot canvas').length);
    assert.equal(chart, 1, 'uPlot drew no canvas');
    const legend = await page.evaluate(() => getComputedStyle(document.querySelector('#chart .uplot')).fontFamily);
    assert.match(legend, /system-ui/, 'uPlot.min.css is not applied');
    assert.equal(await page.evaluate(() => window.smoke.htmxVersion), '2.0.11');
    assert.deepEqual(await cspViolations(page), []);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
