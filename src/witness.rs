//! Witnesses over HTTP (`c2sp.org/tlog-witness`): the witness server (`pax-ledger witness
//! serve`), and the ledger's side, which asks each configured witness to cosign every
//! checkpoint it signs and keeps the cosignatures with the checkpoint.
//!
//! The witness keeps its state — per log origin, the size and root it last cosigned — in
//! `<data>/witness.state`, rewritten durably (temporary file, fsync, rename, directory fsync)
//! before a cosignature is returned, under one lock with the check: it never cosigns two
//! inconsistent checkpoints of a log, nor a smaller tree after a larger one, across restarts
//! and crashes. Its key is `<data>/witness.key` (the format of the ledger's signing key).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ed25519_dalek::VerifyingKey;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::audit::checkpoint::SignedCheckpoint;
use crate::audit::note::{self, Note, SignatureLine};
use crate::audit::witness::{self, AddCheckpoint, Witness, WitnessError, WitnessState};
use crate::domain::Position;
use crate::ledger::Ledger;

/// Request bodies larger than this are refused unread (a note and 63 proof lines fit in 8 KiB).
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;

/// How long the ledger waits for one witness to answer.
pub const WITNESS_TIMEOUT: Duration = Duration::from_secs(10);

const STATE_FILE: &str = "witness.state";

// ------------------------------------------------------------------------------------------
// The witness server

/// Why the witness cannot start or keep its state.
#[derive(Debug, thiserror::Error)]
pub enum WitnessServerError {
    #[error("witness state {path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error("witness key: {0}")]
    Key(#[from] crate::audit::keys::KeyError),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// The witness's state file.
pub struct StateFile {
    dir: PathBuf,
}

impl StateFile {
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned() }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The state as last saved (empty when there is none yet).
    pub fn load(&self) -> Result<WitnessState, WitnessServerError> {
        let path = self.path();
        let error = |reason: String| WitnessServerError::State { path: path.clone(), reason };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| error(format!("unreadable: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(WitnessState::new()),
            Err(e) => Err(error(e.to_string())),
        }
    }

    /// Replaces the state durably (`durable::replace`).
    pub fn save(&self, state: &WitnessState) -> Result<(), WitnessServerError> {
        let path = self.path();
        crate::durable::replace(&path, &serde_json::to_vec_pretty(state).expect("a state serialises"))
            .map_err(|e| WitnessServerError::State { path, reason: e.to_string() })
    }
}

struct Served {
    witness: Witness,
    file: StateFile,
    /// The state, behind the lock that makes check-and-save one step.
    state: Mutex<WitnessState>,
}

/// Serves a witness on `listener` until `shutdown`: `POST /add-checkpoint`.
pub async fn serve(
    listener: TcpListener,
    witness: Witness,
    dir: &Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WitnessServerError> {
    let file = StateFile::new(dir);
    let state = Mutex::new(file.load()?);
    let served = Arc::new(Served { witness, file, state });
    let app = axum::Router::new()
        .route("/add-checkpoint", axum::routing::post(add_checkpoint))
        .layer(axum::extract::DefaultBodyLimit::max(REQUEST_BYTES_MAX))
        .with_state(served);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

async fn add_checkpoint(State(served): State<Arc<Served>>, body: String) -> Response {
    let refuse = |error: WitnessError| {
        let status = StatusCode::from_u16(error.status()).expect("a protocol status");
        match &error {
            WitnessError::Conflict { size, .. } => {
                tracing::warn!(%error, "witness: refused");
                (status, [(header::CONTENT_TYPE, "text/x.tlog.size")], format!("{size}\n")).into_response()
            }
            _ => {
                tracing::warn!(%error, "witness: refused");
                (status, format!("{error}\n")).into_response()
            }
        }
    };
    let request = match AddCheckpoint::parse(&body) {
        Ok(request) => request,
        Err(error) => return refuse(error),
    };
    let mut state = served.state.lock().await;
    let timestamp = chrono::Utc::now().timestamp().max(0) as u64;
    match served.witness.add_checkpoint(&request, &state, timestamp) {
        Ok((next, line)) => {
            if let Err(error) = served.file.save(&next) {
                tracing::error!(%error, "witness: the state could not be saved; nothing cosigned");
                return (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response();
            }
            *state = next;
            (StatusCode::OK, format!("{}\n", line.to_line())).into_response()
        }
        Err(error) => refuse(error),
    }
}

// ------------------------------------------------------------------------------------------
// The ledger's side

/// A witness the ledger asks to cosign: its name and key (from its verifier key text) and the
/// URL prefix of its `add-checkpoint` (http://).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessEndpoint {
    pub name: String,
    pub key: VerifyingKey,
    pub url: String,
}

impl WitnessEndpoint {
    /// `<witness verifier key>@<URL>` (the verifier key as `witness serve` prints it).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (key, url) = text.rsplit_once('@').ok_or("not <witness verifier key>@<URL>")?;
        let (name, key) = parse_witness_key(key)?;
        // What goes to a witness is public (a signed note and hashes) and what comes back is
        // checked against the witness's key, so plain HTTP loses nothing; TLS is not spoken yet.
        if !url.starts_with("http://") {
            return Err(format!("the witness URL {url:?} is not http://"));
        }
        Ok(Self { name, key, url: url.trim_end_matches('/').to_owned() })
    }
}

/// A witness's verifier key text (`<name>+<key id>+<base64(0x04 ‖ key)>`): its name and key.
pub fn parse_witness_key(text: &str) -> Result<(String, VerifyingKey), String> {
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(_), Some(encoded)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("a witness key is <name>+<key id>+<base64 key>".into());
    };
    let bytes = note::base64_decode::<33>(encoded).ok_or("the witness key is not base64 of 33 bytes")?;
    if bytes[0] != witness::COSIGNATURE_TYPE {
        return Err("not a witness cosignature key (type byte 0x04)".into());
    }
    let key = VerifyingKey::from_bytes(bytes[1..].try_into().expect("32 bytes")).map_err(|_| "not an Ed25519 key")?;
    if witness::verifier_key(name, &key) != text.trim() {
        return Err("the key id is not the one of its name and key".into());
    }
    Ok((name.to_owned(), key))
}

type HttpClient = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Posts one `add-checkpoint` request: the status and the body.
async fn post(client: &HttpClient, url: &str, body: String) -> Result<(u16, String), String> {
    let request = hyper::Request::post(format!("{url}/add-checkpoint"))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(WITNESS_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned()))
}

/// Asks `endpoint` to cosign the checkpoint stored at `position`, from the size it last
/// cosigned (`known`, learnt from a 409 when unknown): the cosignature, verified.
async fn ask(
    client: &HttpClient,
    ledger: &Arc<Ledger>,
    endpoint: &WitnessEndpoint,
    known: &mut Option<u64>,
    checkpoint: &SignedCheckpoint,
) -> Result<SignatureLine, String> {
    let size = checkpoint.checkpoint.position;
    let note = checkpoint.to_note().ok_or("not a note")?;
    for _ in 0..2 {
        let old_size = known.unwrap_or(0).min(size);
        let proof = if old_size == 0 {
            Vec::new()
        } else {
            let ledger = ledger.clone();
            tokio::task::spawn_blocking(move || ledger.consistency_hashes(old_size, size))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        let body = AddCheckpoint { old_size, proof, note: note.clone() }.to_body();
        let (status, answer) = post(client, &endpoint.url, body).await?;
        match status {
            200 => {
                let text = Note::parse(&note).map_err(|e| e.to_string())?.text;
                let lines =
                    Note::parse(&format!("{text}\n{answer}")).map_err(|e| format!("an unreadable answer: {e}"))?;
                let line = lines
                    .signatures
                    .into_iter()
                    .find(|line| witness::verify_cosignature(&text, line, &endpoint.name, &endpoint.key).is_some())
                    .ok_or("no valid cosignature of its key in the answer")?;
                *known = Some(size);
                return Ok(line);
            }
            409 => {
                let theirs: u64 = answer.trim().parse().map_err(|_| format!("409 without a size: {answer:?}"))?;
                if theirs > size || Some(theirs) == *known {
                    return Err(format!("refused (409): it cosigned size {theirs} of this log, {}", answer.trim()));
                }
                *known = Some(theirs);
            }
            other => return Err(format!("refused ({other}): {}", answer.trim())),
        }
    }
    Err("the witness's size kept changing".into())
}

/// Until `stop`: after each checkpoint this ledger signs, asks every witness to cosign it and
/// stores the cosignatures that verify. A witness that refuses is logged (a refusal to cosign is
/// what a witness is for); the checkpoint stands without its cosignature.
pub async fn run_witnessing(
    ledger: Arc<Ledger>,
    endpoints: Vec<WitnessEndpoint>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if endpoints.is_empty() {
        return;
    }
    let client: HttpClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    // The size each witness last cosigned, as far as this process knows (in `endpoints` order).
    let mut known: Vec<Option<u64>> = vec![None; endpoints.len()];
    let mut signed = ledger.watch_signed();
    // The latest checkpoint signed before this start (at the last clean stop, say) first.
    let mut next = {
        let ledger = ledger.clone();
        tokio::task::spawn_blocking(move || ledger.checkpoint_positions()).await.ok().and_then(Result::ok)
    }
    .and_then(|positions| positions.last().copied());
    loop {
        let position = match next.take() {
            Some(position) => position,
            None => {
                tokio::select! {
                    changed = signed.changed() => if changed.is_err() { return },
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
                *signed.borrow_and_update()
            }
        };
        if position == Position(0) {
            continue;
        }
        let stored = {
            let ledger = ledger.clone();
            tokio::task::spawn_blocking(move || ledger.checkpoint_at(position)).await
        };
        let Ok(Ok(checkpoint)) = stored else { continue };
        // All witnesses at once: one slow witness does not hold up the others' cosignatures.
        let asked = endpoints.iter().zip(known.iter_mut()).map(|(endpoint, known)| {
            let (client, ledger, checkpoint) = (&client, &ledger, &checkpoint);
            async move { (endpoint, ask(client, ledger, endpoint, known, checkpoint).await) }
        });
        let mut lines = Vec::new();
        for (endpoint, answer) in futures::future::join_all(asked).await {
            match answer {
                Ok(line) => lines.push(line),
                Err(reason) => {
                    tracing::warn!(witness = %endpoint.name, position = position.0, %reason, "no cosignature");
                }
            }
        }
        if !lines.is_empty() {
            let ledger = ledger.clone();
            let added = tokio::task::spawn_blocking(move || ledger.add_cosignatures(position, lines)).await;
            if let Ok(Err(error)) = added {
                tracing::warn!(%error, position = position.0, "cosignatures not stored");
            }
        }
    }
}

/// The listening address a witness prints, for scripts and tests.
pub fn announce(addr: SocketAddr, name: &str, key: &VerifyingKey) -> String {
    format!("witness {name} listening on {addr}; its verifier key: {}", witness::verifier_key(name, key))
}
