//! A webhook receiver for the change-event tests: a real HTTP server (actix-web, on its own
//! thread) on 127.0.0.1 that checks both Standard Webhooks signatures with its own HMAC code
//! (the `hmac`, `sha2` and `sm3` crates, not coedit's), logs every delivery attempt, and answers
//! as its policy says (2xx, an error status, a `Retry-After`, or slowly).
//!
//! Stopped on drop; every wait is bounded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::{bail, Result};
use base64::Engine;
use hmac::{KeyInit, Mac};
use serde_json::Value;

/// What the receiver answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This status at once.
    Status(u16),
    /// This status with `Retry-After: seconds`.
    RetryAfter(u16, u64),
    /// Waits, then answers this status (past the sender's timeout: the sender sees a timeout).
    Slow(Duration, u16),
}

/// One delivery attempt as received.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The request path (one receiver serves several sinks).
    pub path: String,
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: u64,
    /// The HMAC-SHA256 (`v1`) signature verified.
    pub sig_v1: bool,
    /// The HMAC-SM3 (`v1sm3`) signature verified.
    pub sig_sm3: bool,
    /// The body.
    pub body: Value,
    /// The body's bytes, as received.
    pub raw_body: Vec<u8>,
    /// `webhook-signature`, as received.
    pub signature: String,
    /// The status answered.
    pub answered: u16,
    /// When it arrived.
    pub at: Instant,
}

impl Delivery {
    /// Whether this attempt was acknowledged (2xx answered at once).
    pub fn acked(&self) -> bool {
        (200..300).contains(&self.answered)
    }
}

/// Decides the answer from the path, the body and the attempt number of this id (1 first).
pub type Policy = Arc<dyn Fn(&str, &Value, u32) -> Reply + Send + Sync>;

struct Shared {
    key: Vec<u8>,
    log: Mutex<Vec<Delivery>>,
    policy: Mutex<Policy>,
}

/// The running receiver.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn hmac_b64<M: Mac + KeyInit>(key: &[u8], content: &[u8]) -> String {
    let mut m = <M as KeyInit>::new_from_slice(key).expect("any key length");
    m.update(content);
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

async fn receive(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let id = header("webhook-id");
    let timestamp: u64 = header("webhook-timestamp").parse().unwrap_or(0);
    let sigs = header("webhook-signature");
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(&body);
    let v1 = hmac_b64::<hmac::Hmac<sha2::Sha256>>(&shared.key, &content);
    let sm3 = hmac_b64::<hmac::Hmac<sm3::Sm3>>(&shared.key, &content);
    let has = |want: &str| sigs.split(' ').any(|s| s == want);
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = req.path().to_string();
    let policy = shared.policy.lock().expect("policy").clone();
    let attempt = {
        let log = shared.log.lock().expect("log");
        log.iter().filter(|d| d.id == id && d.path == path).count() as u32 + 1
    };
    let reply = policy(&path, &value, attempt);
    let answered = match &reply {
        Reply::Status(s) | Reply::RetryAfter(s, _) | Reply::Slow(_, s) => *s,
    };
    shared.log.lock().expect("log").push(Delivery {
        path,
        id,
        timestamp,
        sig_v1: has(&format!("v1,{v1}")),
        sig_sm3: has(&format!("v1sm3,{sm3}")),
        body: value,
        raw_body: body.to_vec(),
        signature: sigs.clone(),
        answered,
        at: Instant::now(),
    });
    let status =
        |s: u16| HttpResponse::build(actix_web::http::StatusCode::from_u16(s).expect("status"));
    match reply {
        Reply::Status(s) => status(s).finish(),
        Reply::RetryAfter(s, secs) => status(s)
            .insert_header(("Retry-After", secs.to_string()))
            .finish(),
        Reply::Slow(d, s) => {
            actix_web::rt::time::sleep(d).await;
            status(s).finish()
        }
    }
}

impl Receiver {
    /// Starts a receiver checking signatures with `secret` (`whsec_…`).
    pub fn start(secret: &str, policy: Policy) -> Receiver {
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix("whsec_").expect("whsec_ secret"))
            .expect("base64 secret");
        let shared = Arc::new(Shared {
            key,
            log: Mutex::new(Vec::new()),
            policy: Mutex::new(policy),
        });
        let data = web::Data::from(shared.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let sys = actix_web::rt::System::new();
            let r = sys.block_on(async move {
                let srv = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .default_service(web::to(receive))
                })
                .workers(2)
                .disable_signals()
                .shutdown_timeout(1)
                .bind(("127.0.0.1", 0))?;
                let addr = srv.addrs()[0];
                let srv = srv.run();
                let _ = tx.send((addr, srv.handle()));
                srv.await
            });
            if let Err(e) = r {
                eprintln!("receiver: {e}");
            }
        });
        let (addr, handle) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("receiver started");
        Receiver {
            addr,
            shared,
            handle,
            thread: Some(thread),
        }
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every attempt so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.log.lock().expect("log").clone()
    }

    /// Replaces the policy.
    pub fn set_policy(&self, p: Policy) {
        *self.shared.policy.lock().expect("policy") = p;
    }

    /// Waits until `cond` holds of the deliveries, at most `timeout`.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&[Delivery]) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.deliveries()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("receiver: not within {timeout:?}: {what}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let h = self.handle.clone();
        let stop = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(h.stop(false));
        });
        let _ = stop.join();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
