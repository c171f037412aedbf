// The live-webinar scenario in Debian's Chromium (headless, fake camera and
// microphone): a host publishes camera, microphone and a screen; two
// viewers consume; chat and captions round-trip; the capacity limit
// refuses an extra viewer; a promoted attendee publishes; endWebinar ends
// every page's media. Driven by tests/browser_e2e.rs, which starts
// the server and passes the tokens as JSON in argv[2].
import { chromium } from 'playwright-core';

const config = JSON.parse(process.argv[2]);
const base = config.base;
const step = (name) => console.log(`step: ${name}`);

function fail(message) {
  throw new Error(message);
}

async function until(what, check, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last.ok) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  fail(`timed out waiting for ${what}: ${JSON.stringify(last?.detail ?? last)}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--autoplay-policy=no-user-gesture-required',
  ],
});

async function page(name, token) {
  const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
  const p = await context.newPage();
  p.on('pageerror', (e) => console.log(`[${name}] page error: ${e.message}`));
  await p.goto(`${base}/index.html`);
  const joined = await p.evaluate((t) => window.webinar.start(t), token);
  return { name, page: p, joined };
}

const snapshot = (p) => p.page.evaluate(() => window.webinar.snapshot());
const request = (p, event, payload) => p.page.evaluate(([e, d]) => window.webinar.request(e, d), [event, payload]);

function decoding(snap, minVideos, minFrames) {
  const live = snap.videos.filter((v) => !v.closed && v.frames >= minFrames && v.width > 0 && v.height > 0);
  return live.length >= minVideos;
}

try {
  step('host joins and publishes camera (two simulcast layers), microphone and screen during setup');
  const host = await page('host', config.hostToken);
  if (host.joined.role !== 'host' || host.joined.status !== 'setup') fail(`host joined as ${JSON.stringify(host.joined)}`);
  const published = await host.page.evaluate(() => window.webinar.publish(['camera', 'mic', 'screen']));
  if (!published.camera || !published.mic || !published.screen) fail(`published ${JSON.stringify(published)}`);

  step('two viewers join; they see nothing backstage');
  const viewers = [await page('viewer1', config.viewerTokens[0]), await page('viewer2', config.viewerTokens[1])];
  for (const v of viewers) {
    if (v.joined.role !== 'attendee') fail(`${v.name} joined as ${v.joined.role}`);
    if (v.joined.producers.length !== 0) fail(`${v.name} saw backstage producers`);
    await v.page.evaluate((ps) => window.webinar.consumeAll(ps), v.joined.producers);
  }

  step('the capacity limit refuses a third viewer');
  const extra = await browser.newContext().then((c) => c.newPage());
  await extra.goto(`${base}/index.html`);
  const refused = await extra.evaluate((t) => window.webinar.start(t).then(() => 'joined', (e) => e.message), config.extraToken);
  if (!refused.includes('capacity_reached')) fail(`extra viewer: ${refused}`);

  step('the host goes live; viewers decode the camera and the screen and receive audio');
  const started = await request(host, 'startWebinar', {});
  if (!started.ok || started.data.status !== 'live') fail(`startWebinar: ${JSON.stringify(started)}`);
  for (const v of viewers) {
    await until(`${v.name} decoding two videos and receiving audio`, async () => {
      const s = await snapshot(v);
      return { ok: decoding(s, 2, 30) && s.audioPackets > 50 && s.errors.length === 0, detail: s };
    }, 30000);
  }

  step('simulcast: the viewer\'s decoded size follows its preferred layer');
  const cameraSize = async () => (await snapshot(viewers[0])).videos.find((v) => v.producerId === published.camera);
  console.log(`camera as first decoded: ${JSON.stringify(await cameraSize())}`);
  await viewers[0].page.evaluate((id) => window.webinar.setLayers(id, 0), published.camera);
  await until('the low layer (320x240)', async () => {
    const v = await cameraSize();
    return { ok: v && v.width === 320, detail: v };
  }, 20000);
  await viewers[0].page.evaluate((id) => window.webinar.setLayers(id, 1), published.camera);
  await until('the top layer (640x480) once asked for', async () => {
    const v = await cameraSize();
    const sender = await host.page.evaluate(() => window.webinar.sendStats());
    return { ok: v && v.width >= 640, detail: { viewer: v, sender } };
  }, 30000);
  console.log(`camera after asking for layer 1: ${JSON.stringify(await cameraSize())}`);

  step('SVC: the screen (VP9 spatial layers in one stream) follows the preferred layer too');
  const screenSize = async () => (await snapshot(viewers[0])).videos.find((v) => v.producerId === published.screen);
  console.log(`screen as first decoded: ${JSON.stringify(await screenSize())}`);
  await viewers[0].page.evaluate((id) => window.webinar.setLayers(id, 0), published.screen);
  await until('a lower spatial layer of the screen', async () => {
    const v = await screenSize();
    return { ok: v && v.width > 0 && v.width < 640, detail: v };
  }, 20000);
  console.log(`screen after asking for layer 0: ${JSON.stringify(await screenSize())}`);
  await viewers[0].page.evaluate((id) => window.webinar.setLayers(id, 2), published.screen);
  await until('the screen\'s full size again', async () => {
    const v = await screenSize();
    return { ok: v && v.width >= 640, detail: v };
  }, 30000);

  step('chat and captions round-trip');
  const sent = await request(viewers[0], 'sendChat', { text: 'hello from viewer1' });
  if (!sent.ok) fail(`sendChat: ${JSON.stringify(sent)}`);
  const caption = await request(host, 'pushCaption', { text: 'Welcome everyone', isFinal: true, lang: 'en' });
  if (!caption.ok) fail(`pushCaption: ${JSON.stringify(caption)}`);
  for (const p of [host, viewers[1]]) {
    await until(`${p.name} seeing the chat message`, async () => {
      const s = await snapshot(p);
      return { ok: s.chat.some((m) => m.text === 'hello from viewer1'), detail: s.chat };
    });
  }
  for (const v of viewers) {
    await until(`${v.name} seeing the caption`, async () => {
      const s = await snapshot(v);
      return { ok: s.captions.some((c) => c.text === 'Welcome everyone' && c.isFinal), detail: s.captions };
    });
  }

  step('a promoted attendee publishes and the others decode it');
  const res = await fetch(`${base}/api/v1/webinars/${config.webinarId}/roles/${config.promoteRegistrationId}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${config.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ role: 'co-host' }),
  });
  if (res.status !== 200) fail(`promotion: ${res.status}`);
  await until('viewer2 learning it is a co-host', async () => {
    const s = await snapshot(viewers[1]);
    return { ok: s.events.includes('roleChanged'), detail: s.events };
  });
  const promoted = await viewers[1].page.evaluate(() => window.webinar.publish(['camera']));
  if (!promoted.camera) fail('the promoted attendee could not publish');
  await until('viewer1 decoding the promoted camera', async () => {
    const s = await snapshot(viewers[0]);
    const v = s.videos.find((x) => x.producerId === promoted.camera);
    return { ok: !!v && v.frames > 20 && v.width > 0, detail: s.videos };
  }, 30000);

  step('endWebinar ends every page\'s media');
  const ended = await request(host, 'endWebinar', {});
  if (!ended.ok || ended.data.status !== 'ended') fail(`endWebinar: ${JSON.stringify(ended)}`);
  for (const v of viewers) {
    await until(`${v.name} told the webinar ended and disconnected`, async () => {
      const s = await snapshot(v);
      return { ok: s.states.includes('ended') && !s.connected, detail: { states: s.states, connected: s.connected } };
    });
  }
  const before = (await snapshot(viewers[0])).videos.map((v) => v.frames);
  await new Promise((r) => setTimeout(r, 2000));
  const after = (await snapshot(viewers[0])).videos.map((v) => v.frames);
  const stillDecoding = after.some((f, i) => f > before[i] + 5);
  if (stillDecoding) fail(`video kept flowing after the end: ${before} -> ${after}`);

  console.log(JSON.stringify({ result: 'passed', published, promoted }));
  await browser.close();
} catch (e) {
  console.error(`browser scenario failed: ${e.message}`);
  await browser.close();
  process.exit(1);
}
