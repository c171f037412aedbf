// A small browser client of the webinar's Socket.IO contract, on the
// unmodified mediasoup-client and socket.io-client. The test pages use it
// as the web app will: join with a join token, publish, consume, chat.
import { Device } from 'mediasoup-client';
import { io } from 'socket.io-client';

export class WebinarClient {
  constructor(token) {
    this.token = token;
    this.device = null;
    this.sendTransport = null;
    this.recvTransport = null;
    this.consumers = new Map();
    this.listeners = [];
  }

  connect() {
    this.socket = io({ path: '/socket.io', auth: { token: this.token }, transports: ['websocket'] });
    return new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('connect_error', (e) => reject(new Error(`connect_error: ${e.message}`)));
    });
  }

  on(event, handler) {
    this.socket.on(event, handler);
  }

  /** Sends an event and resolves with the ack's data, or rejects with its error code. */
  request(event, payload = {}) {
    return new Promise((resolve, reject) => {
      this.socket.timeout(10000).emit(event, payload, (err, ack) => {
        if (err) return reject(new Error(`${event}: no ack`));
        if (ack && ack.ok) return resolve(ack.data);
        const e = new Error(`${event}: ${ack?.error?.code}: ${ack?.error?.message}`);
        e.code = ack?.error?.code;
        reject(e);
      });
    });
  }

  async join() {
    const data = await this.request('join', {});
    this.joined = data;
    this.device = new Device();
    await this.device.load({ routerRtpCapabilities: data.routerRtpCapabilities });
    return data;
  }

  async ensureSendTransport() {
    if (this.sendTransport) return this.sendTransport;
    const params = await this.request('createWebRtcTransport', { direction: 'send' });
    const t = this.device.createSendTransport(params);
    t.on('connect', ({ dtlsParameters }, ok, fail) => {
      this.request('connectWebRtcTransport', { transportId: t.id, dtlsParameters }).then(() => ok(), fail);
    });
    t.on('produce', ({ kind, rtpParameters, appData }, ok, fail) => {
      this.request('produce', { transportId: t.id, kind, rtpParameters, appData }).then(({ id }) => ok({ id }), fail);
    });
    this.sendTransport = t;
    return t;
  }

  async ensureRecvTransport() {
    if (this.recvTransport) return this.recvTransport;
    const params = await this.request('createWebRtcTransport', { direction: 'recv' });
    const t = this.device.createRecvTransport(params);
    t.on('connect', ({ dtlsParameters }, ok, fail) => {
      this.request('connectWebRtcTransport', { transportId: t.id, dtlsParameters }).then(() => ok(), fail);
    });
    this.recvTransport = t;
    return t;
  }

  async publish(track, source, options = {}) {
    const t = await this.ensureSendTransport();
    return t.produce({ track, appData: { source }, ...options });
  }

  async consume(producerId) {
    const t = await this.ensureRecvTransport();
    const params = await this.request('consume', {
      transportId: t.id,
      producerId,
      rtpCapabilities: this.device.rtpCapabilities,
    });
    const consumer = await t.consume({
      id: params.id,
      producerId: params.producerId,
      kind: params.kind,
      rtpParameters: params.rtpParameters,
    });
    this.consumers.set(consumer.id, consumer);
    await this.request('resumeConsumer', { consumerId: consumer.id });
    return consumer;
  }
}
