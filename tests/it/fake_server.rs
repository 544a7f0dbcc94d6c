//! A scripted `LedgerService` on 127.0.0.1:0, for what a real server does not do on demand:
//! answer UNAVAILABLE a given number of times, or end a subscription with a given status.
//! It commits nothing: an append is acknowledged with made-up positions.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use pax_ledger::proto::v1 as pb;
use pax_ledger::proto::v1::ledger_service_server::{LedgerService, LedgerServiceServer};
use pax_ledger::server::ServerTls;
use pax_ledger::service::peer::client_fingerprint;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// What the fake answers, and what it was sent.
#[derive(Default)]
pub struct Script {
    /// Answers to the next appends, in order; once empty, appends are acknowledged.
    pub append_failures: VecDeque<Status>,
    /// Every append request received, failed or not.
    pub appends: Vec<pb::AppendRequest>,
    /// What a subscription sends, then how it ends: `None` ends it with OK.
    pub subscription: Vec<pb::subscribe_response::Message>,
    pub subscription_end: Option<Status>,
    /// The client certificate's fingerprint of every append received, as the handler saw it
    /// (`service::peer`): `None` without mutual TLS.
    pub client_fingerprints: Vec<Option<String>>,
}

#[derive(Clone)]
struct Fake(Arc<Mutex<Script>>);

#[tonic::async_trait]
impl LedgerService for Fake {
    async fn append(&self, request: Request<pb::AppendRequest>) -> Result<Response<pb::AppendResponse>, Status> {
        let mut script = self.0.lock().unwrap();
        script.client_fingerprints.push(client_fingerprint(&request).map(|f| f.to_string()));
        let request = request.into_inner();
        script.appends.push(request.clone());
        if let Some(status) = script.append_failures.pop_front() {
            return Err(status);
        }
        let acknowledged = script.appends.len() as u64 * 1000;
        let events = request
            .events
            .iter()
            .enumerate()
            .map(|(i, event)| pb::AppendedEvent {
                event_id: event.event_id.clone(),
                stream: "fake".into(),
                revision: 0,
                position: acknowledged + i as u64,
            })
            .collect();
        Ok(Response::new(pb::AppendResponse { events, record_time: None, already_committed: false }))
    }

    async fn read_stream(&self, _: Request<pb::ReadStreamRequest>) -> Result<Response<pb::ReadStreamResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn read_all(&self, _: Request<pb::ReadAllRequest>) -> Result<Response<pb::ReadAllResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_event(&self, _: Request<pb::GetEventRequest>) -> Result<Response<pb::RecordedEvent>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type SubscribeStream = futures::stream::Iter<std::vec::IntoIter<Result<pb::SubscribeResponse, Status>>>;

    async fn subscribe(&self, _: Request<pb::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let script = self.0.lock().unwrap();
        let mut items: Vec<Result<pb::SubscribeResponse, Status>> = script
            .subscription
            .iter()
            .map(|message| Ok(pb::SubscribeResponse { message: Some(message.clone()) }))
            .collect();
        items.extend(script.subscription_end.clone().map(Err));
        Ok(Response::new(futures::stream::iter(items)))
    }
}

/// A running fake; dropping it stops it.
pub struct FakeServer {
    pub url: String,
    pub script: Arc<Mutex<Script>>,
    _stop: oneshot::Sender<()>,
}

impl FakeServer {
    pub async fn start(script: Script) -> Self {
        Self::start_with(script, None).await
    }

    /// A fake served with the server's TLS (`ServerTls::config`), at `https://localhost:PORT`.
    pub async fn start_tls(script: Script, tls: &ServerTls) -> Self {
        Self::start_with(script, Some(tls)).await
    }

    async fn start_with(script: Script, tls: Option<&ServerTls>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(script));
        let (stop, stopped) = oneshot::channel::<()>();
        let service = LedgerServiceServer::new(Fake(script.clone()));
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls.config()).expect("the server's TLS configuration");
        }
        tokio::spawn(builder.add_service(service).serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
            let _ = stopped.await;
        }));
        let url = match tls {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        Self { url, script, _stop: stop }
    }
}
