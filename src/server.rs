//! Builds and runs the gRPC server: the ledger service, health, reflection, limits, TLS and
//! graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::ledger::Ledger;
use crate::proto::v1::access_service_server::AccessServiceServer;
use crate::proto::v1::audit_service_server::AuditServiceServer;
use crate::proto::v1::ledger_service_server::LedgerServiceServer;
use crate::proto::v1::projection_service_server::ProjectionServiceServer;
use crate::proto::v1::query_service_server::QueryServiceServer;
use crate::service::{
    AccessLimits, AccessService, AuditService, AuthLayer, LedgerService, ProjectionService, QueryService,
    RequestSizeLayer,
};

/// Largest request message any service accepts, in bytes as received (the gRPC message's
/// length prefix, unknown fields included): `APPEND_EVENTS_MAX` events at the largest record
/// size, with room for the wire's own overhead. Beyond it, RESOURCE_EXHAUSTED from
/// [`RequestSizeLayer`] before anything is decoded; tonic's own decoding limit is set to the same
/// value so that its OUT_OF_RANGE is never reached.
pub const REQUEST_BYTES_MAX: usize = 16 * 1024 * 1024;
/// How long a graceful stop waits for open connections (e.g. a subscriber that stopped
/// reading) before it closes them.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a client may take over its TLS handshake. tonic runs each handshake in a task of
/// its own, so a slow one does not hold up others; the limit frees what a client that connects
/// and says nothing holds.
pub const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the server presents and requires over TLS, as PEM text (read and checked by
/// `ServeConfig::tls`).
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// The server's certificate chain, leaf first.
    pub cert_pem: Vec<u8>,
    /// The private key of the leaf certificate.
    pub key_pem: Vec<u8>,
    /// With it, mutual TLS: every client must present a certificate that chains to one of
    /// these certificates, or its handshake fails.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl ServerTls {
    /// tonic's (rustls') configuration of this TLS: HTTP/2 over TLS 1.2 or 1.3, client
    /// certificates required when a client CA is set.
    pub fn config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        match &self.client_ca_pem {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
            None => config,
        }
    }

    /// Whether clients must present a certificate.
    pub fn is_mutual(&self) -> bool {
        self.client_ca_pem.is_some()
    }
}

/// How the server is reached, and the limits per principal; the default is plaintext.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Serve TLS (or mutual TLS) instead of plaintext.
    pub tls: Option<ServerTls>,
    /// Requests per second and open subscriptions per principal.
    pub limits: AccessLimits,
    /// The witnesses asked to cosign each checkpoint the ledger signs.
    pub witnesses: Vec<crate::witness::WitnessEndpoint>,
    /// Where requests are counted (`serve --metrics-listen`; the ledger's observer is set with
    /// the same metrics when it is opened).
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves `ledger` in plaintext on `listener` until `shutdown` resolves, then stops taking
/// requests, lets in-flight appends finish (each answered after its fsync), ends subscriptions
/// and returns.
pub async fn run(
    listener: TcpListener,
    ledger: Arc<Ledger>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    run_with(listener, ledger, Options::default(), shutdown).await
}

/// [`run`], reached as `options` say (TLS or mutual TLS). With TLS, a connection whose
/// handshake fails (plaintext, no client certificate, one from another CA) is closed before
/// any request is read.
pub async fn run_with(
    listener: TcpListener,
    ledger: Arc<Ledger>,
    options: Options,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<LedgerServiceServer<LedgerService>>().await;
    health.set_serving::<QueryServiceServer<QueryService>>().await;
    health.set_serving::<ProjectionServiceServer<ProjectionService>>().await;
    health.set_serving::<AuditServiceServer<AuditService>>().await;
    health.set_serving::<AccessServiceServer<AccessService>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?
        .max_decoding_message_size(REQUEST_BYTES_MAX);
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?
        .max_decoding_message_size(REQUEST_BYTES_MAX);

    // Stored data that fails its check takes the service out of rotation.
    let mut fault = ledger.watch_fault();
    let fault_health = health.clone();
    let fault_watch = tokio::spawn(async move {
        if fault.wait_for(Option::is_some).await.is_ok() {
            fault_health.set_not_serving::<LedgerServiceServer<LedgerService>>().await;
            fault_health.set_not_serving::<QueryServiceServer<QueryService>>().await;
            fault_health.set_not_serving::<ProjectionServiceServer<ProjectionService>>().await;
            fault_health.set_not_serving::<AuditServiceServer<AuditService>>().await;
            fault_health.set_not_serving::<AccessServiceServer<AccessService>>().await;
            fault_health.set_service_status("", ServingStatus::NotServing).await;
        }
    });

    // A disk too full for appends takes the ledger service out of rotation until space is
    // freed (checked again every `DISK_RECHECK`); appends then resume by themselves.
    let mut low_disk = ledger.watch_disk();
    let (disk_health, disk_ledger) = (health.clone(), ledger.clone());
    let disk_watch = tokio::spawn(async move {
        while low_disk.wait_for(Option::is_some).await.is_ok() {
            disk_health.set_not_serving::<LedgerServiceServer<LedgerService>>().await;
            while disk_ledger.recheck_disk() {
                tokio::time::sleep(crate::ledger::DISK_RECHECK).await;
            }
            if disk_ledger.watch_fault().borrow().is_none() {
                disk_health.set_serving::<LedgerServiceServer<LedgerService>>().await;
            }
        }
    });

    let closing = ledger.clone();
    let stop_health = health.clone();
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let witnessing =
        tokio::spawn(crate::witness::run_witnessing(ledger.clone(), options.witnesses.clone(), stopped.clone()));
    let shutdown = async move {
        shutdown.await;
        stopping.send_replace(true);
        tracing::info!("shutting down: finishing in-flight appends");
        stop_health.set_not_serving::<LedgerServiceServer<LedgerService>>().await;
        stop_health.set_not_serving::<QueryServiceServer<QueryService>>().await;
        stop_health.set_not_serving::<ProjectionServiceServer<ProjectionService>>().await;
        stop_health.set_not_serving::<AuditServiceServer<AuditService>>().await;
        stop_health.set_not_serving::<AccessServiceServer<AccessService>>().await;
        stop_health.set_service_status("", ServingStatus::NotServing).await;
        closing.close();
    };
    // Without TCP_NODELAY, Nagle's algorithm holds a response back until the client's delayed
    // ACK (≈40 ms): measured, it capped 100-event appends at ≈17k events/s on an idle machine.
    // TLS wraps each accepted stream after these options are set on it, so it keeps them.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &options.tls {
        builder = builder.tls_config(tls.config())?;
    }
    let serve = builder
        .layer(crate::metrics::RequestLayer::new(options.metrics.clone()))
        .layer(RequestSizeLayer::new(REQUEST_BYTES_MAX))
        .layer(AuthLayer::new(ledger.clone(), options.limits))
        .add_service(health_service.max_decoding_message_size(REQUEST_BYTES_MAX))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            LedgerServiceServer::new(LedgerService::with_limits(ledger.clone(), options.limits))
                .max_decoding_message_size(REQUEST_BYTES_MAX),
        )
        .add_service(
            QueryServiceServer::new(QueryService::new(ledger.clone())).max_decoding_message_size(REQUEST_BYTES_MAX),
        )
        .add_service(
            ProjectionServiceServer::new(ProjectionService::new(ledger.clone()))
                .max_decoding_message_size(REQUEST_BYTES_MAX),
        )
        .add_service(
            AuditServiceServer::new(AuditService::new(ledger.clone())).max_decoding_message_size(REQUEST_BYTES_MAX),
        )
        .add_service(
            AccessServiceServer::new(AccessService::new(ledger.clone())).max_decoding_message_size(REQUEST_BYTES_MAX),
        )
        .serve_with_incoming_shutdown(incoming, shutdown);
    // A graceful stop waits for open connections, and a client that stopped reading a stream
    // would hold it forever: past the grace period, stop waiting.
    let grace = async move {
        let _ = stopped.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        result = serve => result,
        () = grace => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; closing them");
            Ok(())
        }
    };
    fault_watch.abort();
    disk_watch.abort();
    witnessing.abort();
    let joining = ledger.clone();
    let _ = tokio::task::spawn_blocking(move || joining.shutdown()).await;
    tracing::info!("stopped");
    Ok(result?)
}
