// Vigie's operator console in the browser: the live map, search, the
// equipment panel and its chart. Served as an ES module; no inline script
// anywhere (the Content-Security-Policy forbids it). The server does the
// heavy lifting (clusters, sight, statuses); this file draws and listens.

const COLORS = {
  fault: '#e5484d',
  offline: '#a875e8',
  stale: '#8b949e',
  dimmed: '#e8c547',
  working: '#3fb871',
};

// Every page: log out with the session's anti-CSRF token.
function csrfToken() {
  try {
    return JSON.parse(document.body.getAttribute('hx-headers') || '{}')['X-CSRF-Token'] || '';
  } catch {
    return '';
  }
}

for (const form of document.querySelectorAll('form.logout')) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    await fetch('/auth/logout', { method: 'POST', headers: { 'X-CSRF-Token': csrfToken() } }).catch(() => {});
    window.location.assign('/auth/login');
  });
}

// The alarm board: its rows re-read themselves (htmx) as soon as the
// server says alarms changed, and every 10 s whatever happens.
if (document.getElementById('alarm-rows')) {
  const events = new EventSource('/console/alarms/events');
  events.addEventListener('alarms', () => document.body.dispatchEvent(new CustomEvent('alarms-changed')));
}

const mapElement = document.getElementById('map');
if (mapElement) {
  startMap(mapElement).catch((error) => {
    console.error('Vigie: the map could not start', error);
    mapElement.textContent = String(error);
  });
}

async function startMap(element) {
  const config = JSON.parse(element.dataset.config);
  // The first view is asked for while the browser is still compiling the
  // map library (the slowest step on a modest control-room PC).
  const early = config.extent ? initialView(config.extent, element) : null;
  const earlyData = early ? fetch(`/console/api/map?${early.params}`).then((r) => (r.ok ? r.json() : null)) : null;
  const maplibregl = await import('/console/assets/vendor/maplibre-gl/maplibre-gl.mjs');
  maplibregl.setWorkerUrl('/console/assets/vendor/maplibre-gl/maplibre-gl-worker.mjs');
  const statusColor = ['match', ['get', 's'], ...Object.entries(COLORS).flat(), COLORS.working];

  const map = new maplibregl.Map({
    container: element,
    style: baseStyle(maplibregl, config),
    bounds: config.extent || [[4.9, 47.2], [5.2, 47.4]],
    fitBoundsOptions: { padding: 40 },
    attributionControl: { compact: true },
    dragRotate: false,
    pitchWithRotate: false,
  });
  map.touchZoomRotate.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'bottom-right');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');

  // The features the map holds now: single assets by id, and the total.
  let collection = { type: 'FeatureCollection', features: [] };
  const points = new Map();
  let total = 0;
  let selected = null;
  let clusterMarkers = [];

  const countElement = document.getElementById('asset-count');
  const panel = document.getElementById('panel');

  window.vigie = {
    map,
    assetTotal: () => total,
    statusOf: (id) => points.get(id)?.properties.s ?? null,
    openPanel,
  };

  // The first view's data: the early answer when the map framed the city
  // as predicted, else asked now (while the map loads its style).
  let inflight = null;
  const firstView =
    earlyData && Math.abs(map.getZoom() - early.zoom) < 0.01 ? earlyData.catch(() => fetchView()) : fetchView();
  await new Promise((resolve) => map.once('load', resolve));
  map.addSource('assets', { type: 'geojson', data: collection });
  map.addLayer({
    id: 'clusters',
    type: 'circle',
    source: 'assets',
    filter: ['has', 'count'],
    paint: {
      'circle-color': statusColor,
      'circle-opacity': 0.85,
      'circle-radius': ['interpolate', ['linear'], ['ln', ['get', 'count']], 0.7, 9, 9, 26],
      'circle-stroke-color': '#0d1117',
      'circle-stroke-width': 1.5,
    },
  });
  map.addLayer({
    id: 'points',
    type: 'circle',
    source: 'assets',
    filter: ['has', 'id'],
    paint: {
      'circle-color': statusColor,
      'circle-radius': ['interpolate', ['linear'], ['zoom'], 12, 3, 16, 5, 19, 9],
      'circle-stroke-color': '#0d1117',
      'circle-stroke-width': 1,
    },
  });
  map.addLayer({
    id: 'selected',
    type: 'circle',
    source: 'assets',
    filter: ['==', ['get', 'id'], ''],
    paint: { 'circle-radius': 14, 'circle-color': 'rgba(0,0,0,0)', 'circle-stroke-color': '#58a6ff', 'circle-stroke-width': 3 },
  });

  // --- data in view -------------------------------------------------------
  // The assets in the current view, from the server (clustered there).
  async function fetchView() {
    inflight?.abort();
    const controller = new AbortController();
    inflight = controller;
    const b = map.getBounds();
    const params = new URLSearchParams({
      bbox: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => v.toFixed(6)).join(','),
      zoom: map.getZoom().toFixed(2),
    });
    const lines = checkedLines();
    if (lines !== null) params.set('lines', lines.length ? lines.join(',') : '-');
    const commune = document.getElementById('commune')?.value;
    if (commune) params.set('commune', commune);
    const response = await fetch(`/console/api/map?${params}`, { signal: controller.signal });
    if (response.status === 401) {
      window.location.assign('/auth/login');
      return null;
    }
    if (!response.ok) throw new Error(`map data: HTTP ${response.status}`);
    return response.json();
  }

  function applyView(data) {
    if (!data) return;
    collection = data;
    total = data.total;
    points.clear();
    for (const f of data.features) if (f.properties.id) points.set(f.properties.id, f);
    map.getSource('assets').setData(collection);
    showTotal();
    drawClusterCounts();
  }

  async function refresh() {
    try {
      applyView(await fetchView());
    } catch (error) {
      if (error.name !== 'AbortError') console.error('Vigie:', error);
    }
  }

  function showTotal() {
    if (!countElement) return;
    countElement.dataset.count = String(total);
    countElement.textContent = total.toLocaleString(document.documentElement.lang);
  }

  // Cluster counts as small HTML labels (no font download needed offline).
  function drawClusterCounts() {
    for (const m of clusterMarkers) m.remove();
    clusterMarkers = [];
    const clusters = collection.features.filter((f) => f.properties.count);
    if (clusters.length > 600) return;
    for (const f of clusters) {
      const label = document.createElement('span');
      label.className = 'cluster-count';
      label.textContent = f.properties.count >= 10000 ? `${Math.round(f.properties.count / 1000)}k` : String(f.properties.count);
      clusterMarkers.push(new maplibregl.Marker({ element: label }).setLngLat(f.geometry.coordinates).addTo(map));
    }
  }

  function checkedLines() {
    const boxes = [...document.querySelectorAll('#lines input[name=line]')];
    if (boxes.every((b) => b.checked)) return null;
    return boxes.filter((b) => b.checked).map((b) => b.value);
  }

  let moveTimer = null;
  map.on('moveend', () => {
    clearTimeout(moveTimer);
    moveTimer = setTimeout(refresh, 120);
  });
  document.getElementById('lines')?.addEventListener('change', refresh);
  document.getElementById('commune')?.addEventListener('change', refresh);

  // --- live changes -------------------------------------------------------
  let renderPending = false;
  let reloadTimer = null;
  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(() => {
      renderPending = false;
      map.getSource('assets').setData(collection);
    });
  }

  function keeps(change) {
    const lines = checkedLines();
    const commune = document.getElementById('commune')?.value;
    return (lines === null || lines.includes(change.l)) && (!commune || change.id.includes(`:${commune}:`));
  }

  function applyChanges(changes) {
    const clustered = map.getZoom() < config.clusterBelowZoom;
    const bounds = map.getBounds();
    let touched = false;
    let clusterChanged = false;
    for (const c of changes) {
      if (c.id === selected) refreshPanelSoon();
      const known = points.get(c.id);
      if (c.gone) {
        if (known) {
          points.delete(c.id);
          collection.features = collection.features.filter((f) => f !== known);
          total -= 1;
          touched = true;
        }
        continue;
      }
      if (known) {
        known.properties.s = c.s;
        known.properties.n = c.n;
        known.geometry.coordinates = c.c;
        touched = true;
      } else if (bounds.contains(c.c) && keeps(c)) {
        if (clustered) {
          clusterChanged = true;
        } else {
          const f = { type: 'Feature', geometry: { type: 'Point', coordinates: c.c }, properties: { id: c.id, t: c.t, l: c.l, s: c.s, n: c.n } };
          points.set(c.id, f);
          collection.features.push(f);
          total += 1;
          touched = true;
        }
      }
    }
    if (touched) {
      showTotal();
      scheduleRender();
    }
    // Clusters are recounted by the server, at most every 3 s.
    if (clusterChanged && !reloadTimer) {
      reloadTimer = setTimeout(() => {
        reloadTimer = null;
        refresh();
      }, 3000);
    }
  }

  const liveState = document.getElementById('live-state');
  function connect() {
    const events = new EventSource('/console/events');
    events.addEventListener('open', () => {
      liveState.textContent = config.texts.live;
      liveState.dataset.state = 'live';
    });
    events.addEventListener('changes', (event) => applyChanges(JSON.parse(event.data)));
    events.addEventListener('resync', refresh);
    events.addEventListener('error', () => {
      liveState.textContent = config.texts.reconnecting;
      liveState.dataset.state = 'reconnecting';
    });
  }

  // --- selection, panel, chart ---------------------------------------------
  map.on('click', 'points', (event) => {
    const f = event.features?.[0];
    if (f) openPanel(f.properties.id);
  });
  map.on('click', 'clusters', (event) => {
    const f = event.features?.[0];
    if (f) map.easeTo({ center: f.geometry.coordinates, zoom: Math.min(map.getZoom() + 2.5, 18) });
  });
  for (const layer of ['points', 'clusters']) {
    map.on('mouseenter', layer, () => (map.getCanvas().style.cursor = 'pointer'));
    map.on('mouseleave', layer, () => (map.getCanvas().style.cursor = ''));
  }

  async function openPanel(id) {
    selected = id;
    map.setFilter('selected', ['==', ['get', 'id'], id]);
    const response = await fetch(`/console/equipment/${encodeURIComponent(id)}`);
    if (response.status === 401) return window.location.assign('/auth/login');
    panel.innerHTML = await response.text();
    // The panel's commands are htmx controls: bind them.
    window.htmx?.process(panel);
    panel.dataset.entity = id;
    panel.hidden = false;
    drawChart(panel.querySelector('.chart'), 'PT24H');
  }

  // The open panel follows its asset live: the state, attributes and events
  // are re-read (at most every 2 s) and swapped in place; the chart stays.
  let panelTimer = null;
  function refreshPanelSoon() {
    if (panelTimer) return;
    panelTimer = setTimeout(async () => {
      panelTimer = null;
      const id = selected;
      if (!id || panel.hidden) return;
      const response = await fetch(`/console/equipment/${encodeURIComponent(id)}`);
      if (!response.ok || id !== selected) return;
      const fresh = new DOMParser().parseFromString(await response.text(), 'text/html');
      for (const part of ['.panel-head .badge', '.alarms-section', '.attrs tbody', '.events-section']) {
        const now = panel.querySelector(part);
        const next = fresh.querySelector(part);
        if (now && next) now.replaceWith(document.adoptNode(next));
      }
    }, 2000);
  }

  function closePanel() {
    panel.hidden = true;
    delete panel.dataset.entity;
    selected = null;
    map.setFilter('selected', ['==', ['get', 'id'], '']);
  }

  panel.addEventListener('click', (event) => {
    const target = event.target.closest('[data-close-panel], [data-entity], [data-range]');
    if (!target || target === panel) return;
    event.preventDefault();
    if (target.hasAttribute('data-close-panel')) return closePanel();
    if (target.dataset.range) {
      for (const b of panel.querySelectorAll('[data-range]')) b.setAttribute('aria-pressed', String(b === target));
      return drawChart(panel.querySelector('.chart'), target.dataset.range);
    }
    if (target.tagName === 'A') return openPanel(target.dataset.entity);
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !panel.hidden) closePanel();
  });

  // --- search --------------------------------------------------------------
  const searchForm = document.getElementById('search-form');
  const searchInput = document.getElementById('search');
  const results = document.getElementById('search-results');
  function select(hit) {
    results.hidden = true;
    map.flyTo({ center: hit.c, zoom: Math.max(map.getZoom(), 18), speed: 2.4 });
    openPanel(hit.id);
  }
  searchForm?.addEventListener('submit', async (event) => {
    event.preventDefault();
    const q = searchInput.value.trim();
    if (!q) return;
    const response = await fetch(`/console/api/search?${new URLSearchParams({ q })}`);
    const hits = response.ok ? await response.json() : [];
    results.replaceChildren();
    if (hits.length && (hits.length === 1 || hits[0].id.toLowerCase() === q.toLowerCase())) return select(hits[0]);
    if (!hits.length) {
      const li = document.createElement('li');
      li.textContent = config.texts.noResult;
      results.append(li);
    }
    for (const hit of hits) {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.innerHTML = '<span class="dot"></span><strong></strong> <span class="muted"></span>';
      button.querySelector('.dot').classList.add(`s-${hit.status}`);
      button.querySelector('strong').textContent = hit.name;
      button.querySelector('.muted').textContent = hit.address;
      button.addEventListener('click', () => select(hit));
      li.append(button);
      results.append(li);
    }
    results.hidden = false;
    results.querySelector('button')?.focus();
  });

  try {
    applyView(await firstView);
  } catch (error) {
    if (error.name !== 'AbortError') console.error('Vigie:', error);
  }
  connect();
  // Silence produces no event: re-read the view each minute so assets that
  // stopped reporting turn grey ("no recent data") on their own.
  setInterval(refresh, 60000);
  // /console?focus=<entity id> (from the alarm board): go to it.
  const focus = new URLSearchParams(window.location.search).get('focus');
  if (focus) {
    fetch(`/console/api/search?${new URLSearchParams({ q: focus })}`)
      .then((r) => (r.ok ? r.json() : []))
      .then((hits) => hits[0] && hits[0].id === focus && select(hits[0]))
      .catch(() => {});
  }
  map.once('idle', () => {
    // Navigation to a usable map, for the benchmark (performance.now() counts from navigation start).
    window.vigie.readyAt = performance.now();
    document.body.dataset.mapReady = '1';
    // The demo's street network (megabytes of GeoJSON for a big city) comes
    // second, under the assets: the equipment is what the operator needs first.
    if (config.streets) addStreets(map, config);
  });
  map.triggerRepaint();
}

// The base map: the configured style, else raster tiles (XYZ or PMTiles),
// else the street network and communes served by Vigie itself.
function baseStyle(maplibregl, config) {
  if (config.styleUrl) return config.styleUrl;
  const sources = {};
  const layers = [{ id: 'background', type: 'background', paint: { 'background-color': '#0d1117' } }];
  if (config.tilesUrl) {
    if (config.tilesUrl.startsWith('pmtiles://')) {
      const protocol = new window.pmtiles.Protocol();
      maplibregl.addProtocol('pmtiles', protocol.tile);
      sources.base = { type: 'raster', url: config.tilesUrl, tileSize: 256, attribution: config.attribution };
    } else {
      sources.base = { type: 'raster', tiles: [config.tilesUrl], tileSize: 256, attribution: config.attribution };
    }
    layers.push({ id: 'base', type: 'raster', source: 'base', paint: { 'raster-saturation': -0.6, 'raster-brightness-max': 0.55 } });
  }
  if (config.communes) {
    sources.communes = { type: 'geojson', data: '/console/basemap/communes.geojson' };
    layers.push({
      id: 'communes',
      type: 'line',
      source: 'communes',
      paint: { 'line-color': '#6e7681', 'line-width': 1.2, 'line-dasharray': [4, 3] },
    });
  }
  return { version: 8, sources, layers };
}

// The view MapLibre frames for `bounds` with 40 px of padding (its
// fitBounds on 512 px Web Mercator tiles), as map-data parameters.
function initialView([[west, south], [east, north]], element) {
  const x = (lon) => (lon + 180) / 360;
  const y = (lat) => {
    const s = Math.sin((Math.max(Math.min(lat, 85.051129), -85.051129) * Math.PI) / 180);
    return 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI);
  };
  const lon = (vx) => vx * 360 - 180;
  const lat = (vy) => (Math.atan(Math.sinh(Math.PI * (1 - 2 * vy))) * 180) / Math.PI;
  const width = element.clientWidth;
  const height = element.clientHeight;
  const padding = 40;
  const dx = x(east) - x(west);
  const dy = y(south) - y(north);
  const zoom = Math.min(Math.log2((width - 2 * padding) / (512 * dx)), Math.log2((height - 2 * padding) / (512 * dy)));
  const world = 512 * 2 ** zoom;
  const cx = (x(west) + x(east)) / 2;
  const cy = (y(north) + y(south)) / 2;
  const bbox = [lon(cx - width / 2 / world), lat(cy + height / 2 / world), lon(cx + width / 2 / world), lat(cy - height / 2 / world)];
  const params = new URLSearchParams({ bbox: bbox.map((v) => v.toFixed(6)).join(','), zoom: zoom.toFixed(2) });
  return { zoom, params };
}

function addStreets(map, config) {
  map.addSource('streets', { type: 'geojson', data: '/console/basemap/streets.geojson', attribution: config.attribution, maxzoom: 15 });
  map.addLayer(
    {
      id: 'streets',
      type: 'line',
      source: 'streets',
      paint: { 'line-color': '#30363d', 'line-width': ['interpolate', ['linear'], ['zoom'], 10, 0.4, 14, 1.5, 18, 6] },
    },
    map.getLayer('communes') ? 'communes' : 'clusters',
  );
}

async function drawChart(container, range) {
  if (!container || !window.uPlot) return;
  const attrs = (container.dataset.attrs || '').split(',').filter(Boolean);
  const texts = JSON.parse(document.getElementById('map').dataset.config).texts;
  container.replaceChildren();
  const now = Date.now();
  const from = new Date(now - durationMs(range)).toISOString();
  const series = [{}];
  const columns = new Map();
  if (attrs.length) {
    const params = new URLSearchParams({ attrs: attrs.join(','), timerel: 'after', timeAt: from, options: 'temporalValues', lastN: '2000' });
    const response = await fetch(`/ngsi-ld/v1/temporal/entities/${encodeURIComponent(container.dataset.entity)}?${params}`);
    const history = response.ok ? await response.json() : {};
    attrs.forEach((name, i) => {
      const values = history[name]?.values || [];
      for (const [value, at] of values) {
        const t = Date.parse(at) / 1000;
        if (!columns.has(t)) columns.set(t, new Array(attrs.length).fill(null));
        columns.get(t)[i] = typeof value === 'number' ? value : null;
      }
      series.push({ label: name, stroke: Object.values(COLORS)[(i + 4) % 5], width: 1.5, spanGaps: true, show: i === 0 });
    });
  }
  const times = [...columns.keys()].sort((a, b) => a - b);
  const data = [times, ...attrs.map((_, i) => times.map((t) => columns.get(t)[i]))];
  if (!attrs.length) {
    const p = document.createElement('p');
    p.className = 'muted';
    p.textContent = texts.noChart;
    container.append(p);
  }
  const width = Math.max(container.clientWidth, 280);
  // Drag to zoom in on a time span, double-click to zoom back out (uPlot's own gestures).
  const plot = new window.uPlot(
    {
      width,
      height: 180,
      series,
      scales: { x: { time: true } },
      axes: [
        // Times as the control room reads them: 24-hour clock, day/month, in the console's language.
        { stroke: '#8b949e', grid: { stroke: '#30363d' }, values: (_u, splits) => splits.map((v) => timeLabel(v, range)) },
        { stroke: '#8b949e', grid: { stroke: '#30363d' } },
      ],
      legend: { live: false },
      cursor: { drag: { x: true, y: false } },
    },
    data,
    container,
  );
  // The chosen range, however little data it holds yet.
  plot.setScale('x', { min: (now - durationMs(range)) / 1000, max: now / 1000 });
}

function timeLabel(seconds, range) {
  const options = range === 'P7D' ? { day: '2-digit', month: '2-digit', hour: '2-digit' } : { hour: '2-digit', minute: '2-digit' };
  return new Date(seconds * 1000).toLocaleString(document.documentElement.lang, { ...options, hourCycle: 'h23' });
}

function durationMs(range) {
  return { PT6H: 6, PT24H: 24, P7D: 168 }[range] * 3600 * 1000 || 24 * 3600 * 1000;
}
