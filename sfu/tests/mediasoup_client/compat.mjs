// The mediasoup-client side of sfu/tests/mediasoup_client_compat.rs.
//
// Runs the unmodified npm mediasoup-client with its own FakeHandler (the
// handler its test suite uses in Node), fed with our SFU's JSON. Speaks JSON
// lines: one object per line on stdin (from Rust) and stdout (to Rust).
// Anything mediasoup-client throws is reported as {"type":"error"} and the
// process exits non-zero, so the Rust test fails with mediasoup-client's own
// message.
//
// Protocol (Rust -> node unless marked <-):
//   init     {routerRtpCapabilities, sendTransport, recvTransport}
//   <- loaded    {canProduce, rtpCapabilities}
//   <- request   {reqId, method: "connect", transportId, dtlsParameters}
//   <- request   {reqId, method: "produce", transportId, kind, rtpParameters}
//   response {reqId, data} | {reqId, error}
//   <- produced  {producers: [{id, kind, rtpParameters}], rtpCapabilities}
//   consume  {consumers: [ConsumerInfo]}
//   <- consumed  {consumers: [...], remoteSdp: {...}}
// and node exits 0.

import { createRequire } from 'node:module';
import readline from 'node:readline';

const require = createRequire(import.meta.url);
const mediasoupClient = require('mediasoup-client');
const { RemoteSdp } = require('mediasoup-client/handlers/sdp/RemoteSdp');
const { FakeMediaStreamTrack } = require('fake-mediastreamtrack');
const sdpTransform = require('sdp-transform');

const { Device, FakeHandler, testFakeParameters } = mediasoupClient;

function send(message) {
	process.stdout.write(`${JSON.stringify(message)}\n`);
}

function fail(error) {
	send({
		type: 'error',
		message: `${error?.name ?? 'Error'}: ${error?.message ?? String(error)}`,
		stack: error?.stack ?? null,
	});
	// Let stdout drain before exiting.
	process.stdout.write('', () => process.exit(1));
}

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

// Incoming lines: responses settle pending requests, anything else waits in
// a queue for the main flow.
const pending = new Map();
const inbox = [];
const inboxWaiters = [];
let nextReqId = 1;

const lines = readline.createInterface({ input: process.stdin });

lines.on('line', line => {
	const message = JSON.parse(line);
	if (message.type === 'response') {
		const request = pending.get(message.reqId);
		if (!request) {
			throw new Error(`response to unknown request ${message.reqId}`);
		}
		pending.delete(message.reqId);
		if (message.error !== undefined) {
			request.reject(new Error(`SFU rejected ${request.method}: ${message.error}`));
		} else {
			request.resolve(message.data);
		}
	} else if (inboxWaiters.length > 0) {
		inboxWaiters.shift()(message);
	} else {
		inbox.push(message);
	}
});

lines.on('close', () => fail(new Error('stdin closed: the Rust side went away')));

function receive(type) {
	const check = message => {
		if (message.type !== type) {
			throw new Error(`expected "${type}" from Rust, got "${message.type}"`);
		}
		return message;
	};
	if (inbox.length > 0) {
		return Promise.resolve(check(inbox.shift()));
	}
	return new Promise(resolve => inboxWaiters.push(resolve)).then(check);
}

function request(method, params) {
	const reqId = nextReqId++;
	send({ type: 'request', reqId, method, ...params });
	return new Promise((resolve, reject) => pending.set(reqId, { method, resolve, reject }));
}

// Transport events answer mediasoup-client through callback/errback, exactly
// as an application's signalling would.
function answerConnect(transport) {
	transport.on('connect', ({ dtlsParameters }, callback, errback) => {
		request('connect', { transportId: transport.id, dtlsParameters })
			.then(() => callback())
			.catch(errback);
	});
}

function answerProduce(transport) {
	transport.on('produce', ({ kind, rtpParameters }, callback, errback) => {
		request('produce', { transportId: transport.id, kind, rtpParameters })
			.then(({ id }) => callback({ id }))
			.catch(errback);
	});
}

async function main() {
	const init = await receive('init');

	const device = new Device({
		handlerFactory: FakeHandler.createFactory(testFakeParameters),
	});
	await device.load({ routerRtpCapabilities: init.routerRtpCapabilities });
	send({
		type: 'loaded',
		canProduce: {
			audio: device.canProduce('audio'),
			video: device.canProduce('video'),
		},
		rtpCapabilities: device.rtpCapabilities,
	});

	const sendTransport = device.createSendTransport(init.sendTransport);
	answerConnect(sendTransport);
	answerProduce(sendTransport);
	const recvTransport = device.createRecvTransport(init.recvTransport);
	answerConnect(recvTransport);

	const codecOf = mimeType =>
		device.rtpCapabilities.codecs.find(
			codec => codec.mimeType.toLowerCase() === mimeType.toLowerCase()
		);

	const producers = [];
	producers.push(
		await sendTransport.produce({
			track: new FakeMediaStreamTrack({ kind: 'audio' }),
			codec: codecOf('audio/opus'),
		})
	);
	producers.push(
		await sendTransport.produce({
			track: new FakeMediaStreamTrack({ kind: 'video' }),
			codec: codecOf('video/VP8'),
			encodings: [
				{ scaleResolutionDownBy: 4, maxBitrate: 100000, scalabilityMode: 'L1T3' },
				{ scaleResolutionDownBy: 2, maxBitrate: 300000, scalabilityMode: 'L1T3' },
				{ scaleResolutionDownBy: 1, maxBitrate: 900000, scalabilityMode: 'L1T3' },
			],
		})
	);
	producers.push(
		await sendTransport.produce({
			track: new FakeMediaStreamTrack({ kind: 'video' }),
			codec: codecOf('video/VP9'),
			encodings: [{ scalabilityMode: 'L3T3_KEY' }],
		})
	);
	// The fake device has no H264; produce it only if a later
	// mediasoup-client's fake device gains it.
	if (codecOf('video/H264')) {
		producers.push(
			await sendTransport.produce({
				track: new FakeMediaStreamTrack({ kind: 'video' }),
				codec: codecOf('video/H264'),
			})
		);
	}

	send({
		type: 'produced',
		producers: producers.map(producer => ({
			id: producer.id,
			kind: producer.kind,
			rtpParameters: producer.rtpParameters,
		})),
		rtpCapabilities: device.rtpCapabilities,
	});

	const { consumers: consumerInfos } = await receive('consume');
	const consumers = [];
	for (const info of consumerInfos) {
		// Exactly what an application passes through from its server.
		consumers.push(
			await recvTransport.consume({
				id: info.id,
				producerId: info.producerId,
				kind: info.kind,
				rtpParameters: info.rtpParameters,
			})
		);
	}

	// The FakeHandler never turns transport parameters into SDP; the browser
	// handlers do, with RemoteSdp. Build the receive-side offer a browser
	// would get, so our iceParameters, iceCandidates, dtlsParameters and
	// consumer rtpParameters go through the code that writes it.
	const remoteSdp = new RemoteSdp({
		iceParameters: init.recvTransport.iceParameters,
		iceCandidates: init.recvTransport.iceCandidates,
		dtlsParameters: init.recvTransport.dtlsParameters,
	});
	consumers.forEach((consumer, index) => {
		remoteSdp.receive({
			mid: String(index),
			kind: consumer.kind,
			offerRtpParameters: consumer.rtpParameters,
			streamId: consumer.rtpParameters.rtcp?.cname ?? '-',
			trackId: consumer.track.id,
		});
	});
	const sdp = sdpTransform.parse(remoteSdp.getSdp());

	send({
		type: 'consumed',
		consumers: consumers.map(consumer => ({
			id: consumer.id,
			producerId: consumer.producerId,
			kind: consumer.kind,
			trackKind: consumer.track.kind,
			rtpParameters: consumer.rtpParameters,
		})),
		remoteSdp: {
			iceLite: sdp.icelite === 'ice-lite',
			media: sdp.media.map(media => ({
				type: media.type,
				mid: String(media.mid),
				iceUfrag: media.iceUfrag,
				icePwd: media.icePwd,
				setup: media.setup,
				fingerprint: media.fingerprint ?? sdp.fingerprint ?? null,
				candidates: (media.candidates ?? []).map(candidate => ({
					ip: candidate.ip,
					port: candidate.port,
					transport: candidate.transport,
					type: candidate.type,
				})),
				payloads: String(media.payloads),
				ssrcs: [...new Set((media.ssrcs ?? []).map(ssrc => ssrc.id))],
			})),
		},
	});

	// Closing stdin is not an error from here on.
	lines.removeAllListeners('close');
	lines.close();
}

main().catch(fail);
