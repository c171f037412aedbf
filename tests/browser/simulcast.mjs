// A 1280x720 camera published with three simulcast encodings, as Chrome
// sends three layers at that size; one viewer asks for each layer in turn
// and decodes the matching size. Driven by tests/browser_e2e.rs.
import { chromium } from 'playwright-core';

const config = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--autoplay-policy=no-user-gesture-required'],
});
async function page(token) {
  const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
  const p = await context.newPage();
  await p.goto(`${config.base}/index.html`);
  const joined = await p.evaluate((t) => window.webinar.start(t), token);
  return { page: p, joined };
}
async function until(what, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last.ok) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last?.detail)}`);
}
try {
  const host = await page(config.hostToken);
  const camera = await host.page.evaluate(async () => {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 } });
    const p = await window.client.publish(media.getVideoTracks()[0], 'camera', {
      encodings: [{ maxBitrate: 150000, scaleResolutionDownBy: 4 }, { maxBitrate: 500000, scaleResolutionDownBy: 2 }, { maxBitrate: 1500000 }],
    });
    return p.id;
  });
  await host.page.evaluate(() => window.webinar.request('startWebinar', {}));
  const viewer = await page(config.viewerToken);
  await viewer.page.evaluate((ps) => window.webinar.consumeAll(ps), viewer.joined.producers);
  const size = async () => (await viewer.page.evaluate(() => window.webinar.snapshot())).videos.find((v) => v.producerId === camera);
  const seen = {};
  for (const [layer, width] of [[0, 320], [1, 640], [2, 1280]]) {
    await viewer.page.evaluate(([id, l]) => window.webinar.setLayers(id, l), [camera, layer]);
    const r = await until(`layer ${layer} (${width} wide)`, async () => {
      const v = await size();
      return { ok: v && v.width === width, detail: { viewer: v, sender: await host.page.evaluate(() => window.webinar.sendStats()) } };
    }, 40000);
    seen[layer] = r.detail.viewer.width;
    console.log(`layer ${layer}: ${JSON.stringify(r.detail.viewer)}`);
  }
  console.log(JSON.stringify({ result: 'passed', seen }));
  await browser.close();
} catch (e) {
  console.error(`simulcast scenario failed: ${e.message}`);
  await browser.close();
  process.exit(1);
}
