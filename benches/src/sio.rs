//! A small Socket.IO client (used by the load generator and by the
//! backend's integration tests): protocol v5 over Engine.IO v4 on
//! a WebSocket, as the browser's `socket.io-client` speaks it (open, ping
//! and pong, namespace connect with `auth`, events, acknowledgements,
//! disconnect). It keeps every received event so tests can assert on what
//! arrived and what did not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Acks = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A server-to-client event and when it arrived.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: Value,
    pub at: Instant,
}

pub struct Sio {
    out: mpsc::UnboundedSender<String>,
    incoming: mpsc::UnboundedReceiver<Event>,
    /// Events received and not yet taken by `next_event`.
    pub seen: Vec<Event>,
    acks: Acks,
    next_ack: u64,
    closed: watch::Receiver<bool>,
}

const WAIT: Duration = Duration::from_secs(10);
/// Tells the writer task to close the WebSocket.
const CLOSE: &str = "\u{0}close";

impl Sio {
    /// Connects with `auth` (e.g. `{"token": ...}`); `Err` carries the
    /// `connect_error` message.
    pub async fn connect(base: &str, auth: Option<Value>) -> Result<Sio, String> {
        Self::connect_with_headers(base, auth, &[]).await
    }

    pub async fn connect_with_headers(
        base: &str,
        auth: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Sio, String> {
        let url = format!(
            "{}/socket.io/?EIO=4&transport=websocket",
            base.replacen("http://", "ws://", 1)
        );
        let mut request = url.into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .unwrap(),
                value.parse().unwrap(),
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket handshake with /socket.io");
        let (mut sink, mut stream) = ws.split();

        let open = next_text(&mut stream).await.expect("Engine.IO open packet");
        assert!(open.starts_with('0'), "expected an open packet, got {open}");
        let connect = match &auth {
            Some(a) => format!("40{a}"),
            None => "40".to_string(),
        };
        sink.send(Message::Text(connect.into())).await.unwrap();
        loop {
            let text = next_text(&mut stream)
                .await
                .ok_or("closed before the namespace connect answer")?;
            if text == "2" {
                sink.send(Message::Text("3".into())).await.unwrap();
            } else if let Some(body) = text.strip_prefix("44") {
                let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                return Err(v["message"].as_str().unwrap_or(body).to_string());
            } else if text.starts_with("40") {
                break;
            } else {
                panic!("unexpected packet before connect: {text}");
            }
        }

        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = watch::channel(false);
        let acks: Acks = Arc::default();
        tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if text == CLOSE {
                    break;
                }
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            sink.close().await.ok();
        });
        let reader_acks = acks.clone();
        let pong = out_tx.clone();
        tokio::spawn(async move {
            while let Some(text) = next_text(&mut stream).await {
                if text == "2" {
                    pong.send("3".into()).ok();
                } else if text.starts_with("41") {
                    break;
                } else if let Some(body) = text.strip_prefix("42") {
                    let start = body.find('[').unwrap_or(body.len());
                    let args: Value = serde_json::from_str(&body[start..]).unwrap();
                    let name = args[0].as_str().unwrap_or_default().to_string();
                    in_tx
                        .send(Event {
                            name,
                            data: args[1].clone(),
                            at: Instant::now(),
                        })
                        .ok();
                } else if let Some(body) = text.strip_prefix("43") {
                    let start = body.find('[').unwrap_or(body.len());
                    let id: u64 = body[..start].parse().unwrap();
                    let args: Value = serde_json::from_str(&body[start..]).unwrap();
                    if let Some(tx) = reader_acks.lock().unwrap().remove(&id) {
                        tx.send(args[0].clone()).ok();
                    }
                }
            }
            closed_tx.send(true).ok();
        });
        Ok(Sio {
            out: out_tx,
            incoming: in_rx,
            seen: Vec::new(),
            acks,
            next_ack: 0,
            closed: closed_rx,
        })
    }

    /// Sends `event` with an ack id; returns where the ack will arrive.
    fn emit_with_ack(&mut self, event: &str, args: Vec<Value>) -> oneshot::Receiver<Value> {
        let id = self.next_ack;
        self.next_ack += 1;
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        let mut packet = vec![Value::String(event.to_string())];
        packet.extend(args);
        // A closed socket drops the sender: the receiver reports it.
        let _ = self.out.send(format!("42{id}{}", Value::Array(packet)));
        rx
    }

    /// Emits `event` with these arguments and waits for the ack's first one.
    pub async fn request_args(&mut self, event: &str, args: Vec<Value>) -> Value {
        let rx = self.emit_with_ack(event, args);
        tokio::time::timeout(WAIT, rx)
            .await
            .unwrap_or_else(|_| panic!("no ack for {event}"))
            .unwrap_or_else(|_| panic!("socket closed before the ack for {event}"))
    }

    /// Emits `event` and returns the ack's `data`, or why there is none
    /// (`ok: false`, no ack in time, socket closed). Never panics: for the
    /// load generator, where one viewer's failure is a figure, not a bug.
    pub async fn call(&mut self, event: &str, data: Value) -> Result<Value, String> {
        let rx = self.emit_with_ack(event, vec![data]);
        let ack = tokio::time::timeout(WAIT, rx)
            .await
            .map_err(|_| format!("no ack for {event}"))?
            .map_err(|_| format!("socket closed before the ack for {event}"))?;
        if ack["ok"] == true {
            Ok(ack["data"].clone())
        } else {
            Err(format!("{event} refused: {}", ack["error"]))
        }
    }

    /// Emits `event` with one payload and returns the ack (`{ok, ...}`).
    pub async fn request(&mut self, event: &str, data: Value) -> Value {
        self.request_args(event, vec![data]).await
    }

    /// The ack's `data`, asserting `ok: true`.
    pub async fn ok(&mut self, event: &str, data: Value) -> Value {
        let ack = self.request(event, data).await;
        assert_eq!(ack["ok"], true, "{event} failed: {ack}");
        ack["data"].clone()
    }

    /// The error code of a refused request, asserting `ok: false`.
    pub async fn refused(&mut self, event: &str, data: Value) -> String {
        let ack = self.request(event, data).await;
        assert_eq!(ack["ok"], false, "{event} should fail: {ack}");
        assert!(ack["error"]["message"].is_string(), "{ack}");
        ack["error"]["code"].as_str().unwrap().to_string()
    }

    fn pump(&mut self) {
        while let Ok(e) = self.incoming.try_recv() {
            self.seen.push(e);
        }
    }

    /// The next `name` event (first one already received, else waits).
    pub async fn next_event(&mut self, name: &str) -> Value {
        self.try_next_event(name, WAIT)
            .await
            .unwrap_or_else(|| panic!("no {name} event; got {:?}", self.seen))
    }

    pub async fn try_next_event(&mut self, name: &str, wait: Duration) -> Option<Value> {
        self.pump();
        if let Some(i) = self.seen.iter().position(|e| e.name == name) {
            return Some(self.seen.remove(i).data);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some(e)) if e.name == name => return Some(e.data),
                Ok(Some(other)) => self.seen.push(other),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Every `name` event received so far and not taken by `next_event`.
    pub fn received(&mut self, name: &str) -> Vec<Event> {
        self.pump();
        self.seen
            .iter()
            .filter(|e| e.name == name)
            .cloned()
            .collect()
    }

    /// Names of all events received so far and not taken.
    pub fn received_names(&mut self) -> Vec<String> {
        self.pump();
        self.seen.iter().map(|e| e.name.clone()).collect()
    }

    /// Waits until the server has closed this socket.
    pub async fn wait_closed(&mut self) -> bool {
        let mut closed = self.closed.clone();
        let result = tokio::time::timeout(WAIT, closed.wait_for(|c| *c)).await;
        result.is_ok()
    }

    /// Leaves like a browser tab that is closed.
    pub async fn disconnect(mut self) {
        self.out.send("41".into()).ok();
        self.out.send(CLOSE.into()).ok();
        self.wait_closed().await;
    }
}

async fn next_text<S>(stream: &mut S) -> Option<String>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match stream.next().await? {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}
