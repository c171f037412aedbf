// What the test pages do, driven from Playwright through window.webinar.
import { WebinarClient } from './webinar-client.js';

const state = {
  errors: [],
  events: [],
  chat: [],
  captions: [],
  videos: {},
  states: [],
};
window.webinarState = state;

function log(kind, data) {
  state.events.push({ kind, data, at: Date.now() });
}

/** Counts decoded frames of a video track, and remembers its size. */
function watchVideo(consumer) {
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  video.srcObject = new MediaStream([consumer.track]);
  document.body.appendChild(video);
  const entry = { producerId: consumer.producerId, frames: 0, width: 0, height: 0 };
  state.videos[consumer.id] = entry;
  const onFrame = (_now, meta) => {
    entry.frames += 1;
    entry.width = meta.width;
    entry.height = meta.height;
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  video.play().catch((e) => state.errors.push(`play: ${e}`));
}

async function audioPacketsReceived(client) {
  let total = 0;
  for (const c of client.consumers.values()) {
    if (c.kind !== 'audio') continue;
    const stats = await c.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp') total += s.packetsReceived || 0;
    });
  }
  return total;
}

/** A canvas animation standing in for a shared screen. */
function screenTrack() {
  const canvas = document.createElement('canvas');
  canvas.width = 640;
  canvas.height = 360;
  const ctx = canvas.getContext('2d');
  let n = 0;
  setInterval(() => {
    ctx.fillStyle = `hsl(${(n * 7) % 360}, 60%, 50%)`;
    ctx.fillRect(0, 0, 640, 360);
    ctx.fillStyle = '#fff';
    ctx.font = '48px sans-serif';
    ctx.fillText(`slide ${n++}`, 40, 120);
  }, 50);
  return canvas.captureStream(20).getVideoTracks()[0];
}

window.webinar = {
  async start(token) {
    const client = new WebinarClient(token);
    window.client = client;
    await client.connect();
    for (const event of ['newProducer', 'producerClosed', 'consumerClosed', 'webinarState', 'participantCount',
      'roleChanged', 'spotlight', 'recordingState', 'kicked', 'activeSpeaker', 'consumerLayersChanged']) {
      client.on(event, (data) => log(event, data));
    }
    client.on('chatMessage', (m) => state.chat.push(m));
    client.on('caption', (c) => state.captions.push(c));
    client.on('webinarState', (s) => state.states.push(s.status));
    client.on('newProducer', (p) => {
      if (state.autoConsume && p.peerId !== client.joined?.peerId) {
        window.webinar.consume(p.id).catch((e) => state.errors.push(`consume ${p.id}: ${e.message}`));
      }
    });
    client.on('consumerClosed', ({ consumerId }) => {
      const c = client.consumers.get(consumerId);
      if (c) c.close();
      if (state.videos[consumerId]) state.videos[consumerId].closed = true;
    });
    const joined = await client.join();
    return { peerId: joined.peerId, role: joined.role, status: joined.webinar.status, producers: joined.producers };
  },
  async request(event, payload) {
    try {
      return { ok: true, data: await window.client.request(event, payload) };
    } catch (e) {
      return { ok: false, code: e.code || e.message };
    }
  },
  async publish(sources) {
    const ids = {};
    const media = await navigator.mediaDevices.getUserMedia({ audio: sources.includes('mic'), video: sources.includes('camera') ? { width: 640, height: 480 } : false });
    if (sources.includes('camera')) {
      const p = await window.client.publish(media.getVideoTracks()[0], 'camera', {
        // Chrome sends at most two simulcast layers of a 640x480 source.
        encodings: [{ maxBitrate: 250000, scaleResolutionDownBy: 2 }, { maxBitrate: 900000 }],
      });
      ids.camera = p.id;
    }
    if (sources.includes('mic')) ids.mic = (await window.client.publish(media.getAudioTracks()[0], 'mic')).id;
    if (sources.includes('screen')) {
      // The screen as VP9 SVC: spatial layers in one stream (K-SVC).
      const vp9 = window.client.device.rtpCapabilities.codecs.find((c) => c.mimeType.toLowerCase() === 'video/vp9');
      const options = vp9 ? { codec: vp9, encodings: [{ scalabilityMode: 'L3T3_KEY' }] } : {};
      ids.screen = (await window.client.publish(screenTrack(), 'screen', options)).id;
    }
    return ids;
  },
  async consumeAll(producers) {
    state.autoConsume = true;
    for (const p of producers) {
      if (p.peerId !== window.client.joined.peerId) await window.webinar.consume(p.id);
    }
  },
  async consume(producerId) {
    const consumer = await window.client.consume(producerId);
    if (consumer.kind === 'video') watchVideo(consumer);
    return consumer.id;
  },
  /** Asks for a spatial layer of the consumer of `producerId`. */
  async setLayers(producerId, spatialLayer) {
    for (const [consumerId, v] of Object.entries(state.videos)) {
      if (v.producerId === producerId) {
        return window.client.request('setConsumerPreferredLayers', { consumerId, spatialLayer });
      }
    }
    throw new Error(`no consumer of ${producerId}`);
  },
  /** What the sending side's browser reports: its bandwidth estimate and each outgoing layer. */
  async sendStats() {
    const t = window.client.sendTransport;
    if (!t) return null;
    const stats = await t.getStats();
    const out = { availableOutgoingBitrate: null, layers: [] };
    stats.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated) out.availableOutgoingBitrate = s.availableOutgoingBitrate;
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        out.layers.push({ rid: s.rid, width: s.frameWidth, active: s.active, limit: s.qualityLimitationReason, bytes: s.bytesSent });
      }
    });
    return out;
  },
  async snapshot() {
    return {
      errors: state.errors,
      chat: state.chat,
      captions: state.captions,
      states: state.states,
      events: state.events.map((e) => e.kind),
      videos: Object.values(state.videos),
      audioPackets: await audioPacketsReceived(window.client),
      connected: window.client.socket.connected,
    };
  },
};
