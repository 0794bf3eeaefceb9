// Benchmark (not a test): time from navigation to a usable map in headless
// Chromium, for cities of the given numbers of streetlights (the rest of
// the equipment keeps its Dijon-scale counts). "Usable" is the console's
// own signal: the first map data drawn and the map idle
// (body[data-map-ready="1"]; window.vigie.readyAt = performance.now()).
//
//   VIGIE_BIN=target/release/vigie node crates/vigie/tests/browser/bench-map.mjs 34000 250000
//
// Per city: 7 navigations in a fresh browser context each (cold: every asset
// fetched and compiled), then 7 reloads in one context (warm: assets
// revalidated by ETag, as an operator's reload). One console is open at a
// time. Prints medians, min and max, in ms.
import { launchBrowser, login, newPage, startVigie } from './harness.mjs';

const ROUNDS = 7;
const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
if (!sizes.length) sizes.push(34000, 250000);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const summary = (xs) => `median ${median(xs).toFixed(0)} ms (min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)})`;

async function ready(page) {
  await page.waitForSelector('body[data-map-ready="1"]', { state: 'attached', timeout: 60000 });
  return page.evaluate(() => window.vigie.readyAt);
}

const browser = await launchBrowser();
try {
  for (const streetlights of sizes) {
    const started = Date.now();
    const vigie = await startVigie({ streetlights, timeout: 900000 });
    try {
      const overview = await (await fetch(`${vigie.base}/console/api/overview`, { headers: { Authorization: `Bearer ${vigie.token}` } })).json();
      console.log(`\n${streetlights} streetlights: ${overview.located} located assets (demo ready in ${((Date.now() - started) / 1000).toFixed(0)} s)`);
      const first = await newPage(browser);
      await login(first.page, vigie, 'admin', vigie.password);
      const state = await first.context.storageState();
      await ready(first.page);
      // One console open at a time: a second one would share the 2 cores.
      await first.context.close();
      const cold = [];
      for (let i = 0; i < ROUNDS; i++) {
        const { context, page } = await newPage(browser);
        await context.addCookies(state.cookies);
        await page.goto(`${vigie.base}/console`);
        cold.push(await ready(page));
        if (i === 0) console.log(`  map holds ${await page.evaluate(() => window.vigie.assetTotal())} assets`);
        await context.close();
      }
      const warm = [];
      const operator = await newPage(browser);
      await operator.context.addCookies(state.cookies);
      await operator.page.goto(`${vigie.base}/console`);
      await ready(operator.page);
      for (let i = 0; i < ROUNDS; i++) {
        await operator.page.reload();
        warm.push(await ready(operator.page));
      }
      await operator.context.close();
      console.log(`  navigation → usable map, cold: ${summary(cold)}`);
      console.log(`  navigation → usable map, warm: ${summary(warm)}`);
    } finally {
      await vigie.stop();
    }
  }
} finally {
  await browser.close();
}
