//! The node's two gRPC servers: Raft (with the internal requests) and Flight.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arka_cluster::network::{EntryIntake, NodeGate, RaftRpcService, GRPC_MESSAGE_BYTES_MAX};
use arka_cluster::ClusterSecret;
use arka_proto::raft::raft_service_server::RaftServiceServer;
use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::ServerTlsConfig;

use super::open::open_authenticator;
use super::tasks::Tasks;
use super::Network;
use crate::auth::Audit;
use crate::config::NodeConfig;
use crate::flight::auth::{Authenticate, Guard};
use crate::flight::drain::Drain;
use crate::flight::peer_requests::InternalService;
use crate::flight::ArkaFlight;
use crate::flight::Served;
use crate::listener::{self, accepted, ConnectionLimits};
use crate::tls::NodeTls;

/// Largest Flight message a node sends (a read's batches are bounded by what was written).
const FLIGHT_ANSWER_BYTES_MAX: usize = 1024 * 1024 * 1024;
/// What a Flight message may carry beyond a batch of `batch-bytes-max`: its IPC header,
/// app_metadata and descriptor.
const FLIGHT_FRAMING_BYTES_MAX: usize = 1024 * 1024;

type FlightService = InterceptedService<FlightServiceServer<ArkaFlight>, Authenticate>;

/// The node's bound listeners.
pub(super) struct Listeners {
    pub raft: TcpListener,
    pub flight: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &NodeConfig) -> anyhow::Result<Listeners> {
        Ok(Listeners {
            raft: bind("raft", &config.raft_addr).await?,
            flight: bind("flight", &config.flight_addr).await?,
        })
    }
}

async fn bind(what: &str, addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {what} address {addr}"))
}

/// The running servers.
pub(super) struct Servers {
    pub raft: Tasks,
    pub flight: Tasks,
}

/// Serves Raft and Flight on `listeners` until the returned tasks are stopped: then each
/// server takes no new connection and ends once its connections have.
pub(super) fn start(
    ctx: &Arc<Served>,
    config: &NodeConfig,
    network: &Network,
    listeners: Listeners,
    intake: EntryIntake,
    drain: Drain,
) -> anyhow::Result<Servers> {
    let cluster_id = &network.cluster_id;
    let raft_service = RaftServiceServer::new(RaftRpcService::new(
        ctx.raft.clone(),
        network.faults.clone(),
        cluster_id.clone(),
        Arc::new(InternalService::new(ctx)),
        intake,
    ))
    .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
    .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    let handshake = Duration::from_millis(config.handshake_timeout_ms);
    let tls = network.tls.as_ref();
    let raft_server = http2_server(tls.map(NodeTls::raft_server), handshake)?.add_service(
        InterceptedService::new(raft_service, NodeGate::new(cluster_id.secret())),
    );
    let flight_server = http2_server(tls.map(NodeTls::flight_server), handshake)?
        .add_service(flight_service(ctx, config, cluster_id.secret(), drain)?);
    let (raft_incoming, flight_incoming) = (
        accepted(listeners.raft, connection_limits(config)),
        accepted(listeners.flight, connection_limits(config)),
    );
    let mut raft = Tasks::new("raft server");
    raft.spawn("raft server", |stop| async move {
        let serving =
            raft_server.serve_with_incoming_shutdown(raft_incoming, stop.cancelled_owned());
        if let Err(e) = serving.await {
            tracing::error!(error = %e, "raft rpc server failed");
        }
    });
    let mut flight = Tasks::new("flight server");
    flight.spawn("flight server", |stop| async move {
        let serving =
            flight_server.serve_with_incoming_shutdown(flight_incoming, stop.cancelled_owned());
        if let Err(e) = serving.await {
            tracing::error!(error = %e, "flight server failed");
        }
    });
    Ok(Servers { raft, flight })
}

/// The Flight service behind its trust rule: the interceptor that reads every call's
/// credentials, the audit log of refusals and admin actions.
pub(super) fn flight_service(
    ctx: &Arc<Served>,
    config: &NodeConfig,
    secret: &ClusterSecret,
    drain: Drain,
) -> anyhow::Result<FlightService> {
    let audit = Audit::to_file(config.data_dir.join("audit.log"));
    let authenticator = open_authenticator(config, secret)?;
    let flight = ArkaFlight::new(
        ctx.clone(),
        authenticator.clone(),
        Guard::new(audit.clone()),
        drain,
    );
    Ok(InterceptedService::new(
        // A larger message is refused from its length prefix, before it is read: a batch over
        // `batch-bytes-max` never costs the node its size in memory.
        FlightServiceServer::new(flight)
            .max_decoding_message_size(config.batch_bytes_max + FLIGHT_FRAMING_BYTES_MAX)
            .max_encoding_message_size(FLIGHT_ANSWER_BYTES_MAX),
        Authenticate::new(authenticator, audit),
    ))
}

/// A gRPC server with arka's HTTP/2 windows and keep-alive pings, and TLS when `tls` is
/// given, whose handshake must end within `handshake`.
pub(super) fn http2_server(
    tls: Option<ServerTlsConfig>,
    handshake: Duration,
) -> anyhow::Result<tonic::transport::Server> {
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls.timeout(handshake))
            .context("TLS configuration")?;
    }
    Ok(server
        .initial_stream_window_size(arka_cluster::network::HTTP2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(arka_cluster::network::HTTP2_CONNECTION_WINDOW_BYTES)
        .http2_keepalive_interval(Some(listener::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(listener::KEEPALIVE_TIMEOUT)))
}

pub(super) fn connection_limits(config: &NodeConfig) -> ConnectionLimits {
    ConnectionLimits {
        max: config.connections_max,
        handshake_timeout: Duration::from_millis(config.handshake_timeout_ms),
    }
}
