//! How the client reaches a node: plain or TLS (`grpc+tls://`, trusting a CA), and with which
//! credentials (a user's password, exchanged for a bearer token by the Handshake, or a token).

use std::sync::Arc;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::HandshakeRequest;
use base64::Engine;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::ClientError;

/// Largest Flight message the client sends or takes.
const MESSAGE_BYTES_MAX: usize = 1024 * 1024 * 1024;

/// Who the client is to the cluster. Its `Debug` never shows a password or token.
#[derive(Clone, Default)]
pub enum Credentials {
    /// A cluster without an auth file.
    #[default]
    None,
    /// A user of the auth file: signs in with a Handshake on each connection.
    Password { user: String, password: String },
    /// A bearer token (from a Handshake, or a static service token).
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Password { user, .. } => write!(f, "Password {{ user: {user:?}, .. }}"),
            Credentials::Token(_) => f.write_str("Token(..)"),
        }
    }
}

/// How to connect to every node of a cluster.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// PEM of the CA that signed the nodes' certificates: connect with TLS, whatever the
    /// address's scheme.
    pub tls_ca_pem: Option<Arc<Vec<u8>>>,
    pub credentials: Credentials,
}

impl ConnectOptions {
    /// Reads the CA file, for [`ConnectOptions::tls_ca_pem`].
    pub fn with_tls_ca_file(mut self, path: &std::path::Path) -> std::io::Result<Self> {
        self.tls_ca_pem = Some(Arc::new(std::fs::read(path)?));
        Ok(self)
    }

    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }
}

/// Adds `authorization: Bearer …` to every call once the client has a token.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type FlightClient = FlightServiceClient<InterceptedService<Channel, Bearer>>;

/// `grpc://HOST:PORT` (or `grpc+tls://`, `http://`, `https://`, a bare `HOST:PORT`) → the URI
/// tonic connects to, `https://` when TLS is on.
fn endpoint_uri(addr: &str, tls: bool) -> String {
    let rest = [
        "grpc+tls://",
        "grpc+tcp://",
        "grpc://",
        "https://",
        "http://",
    ]
    .iter()
    .find_map(|scheme| addr.strip_prefix(scheme))
    .unwrap_or(addr);
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{rest}")
}

fn wants_tls(addr: &str, options: &ConnectOptions) -> bool {
    options.tls_ca_pem.is_some() || addr.starts_with("grpc+tls://") || addr.starts_with("https://")
}

/// A connected Flight client for `addr`, signed in as `options` say.
pub async fn connect(addr: &str, options: &ConnectOptions) -> Result<FlightClient, ClientError> {
    let connect_error = |reason: String| ClientError::Connect {
        addr: addr.to_string(),
        reason,
    };
    let tls = wants_tls(addr, options);
    let mut endpoint = Endpoint::from_shared(endpoint_uri(addr, tls))
        .map_err(|e| connect_error(e.to_string()))?
        .tcp_nodelay(true)
        .initial_stream_window_size(arka_cluster::network::HTTP2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(arka_cluster::network::HTTP2_CONNECTION_WINDOW_BYTES);
    if tls {
        let ca = options.tls_ca_pem.as_ref().ok_or_else(|| {
            connect_error("a grpc+tls:// address needs the cluster's CA certificate".into())
        })?;
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.as_slice()));
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| connect_error(format!("TLS: {e}")))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| connect_error(format!("{e}: {}", source_chain(&e))))?;
    let token = match &options.credentials {
        Credentials::None => None,
        Credentials::Token(token) => Some(token.clone()),
        Credentials::Password { user, password } => Some(
            sign_in(
                flight_client(channel.clone(), Bearer::default()),
                user,
                password,
            )
            .await?,
        ),
    };
    let bearer = match token {
        None => Bearer::default(),
        Some(token) => Bearer(Some(
            MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|e| ClientError::Decode(format!("token: {e}")))?,
        )),
    };
    Ok(flight_client(channel, bearer))
}

fn flight_client(channel: Channel, bearer: Bearer) -> FlightClient {
    FlightServiceClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX)
}

/// The Flight basic-auth Handshake: Basic credentials in, the bearer token out of the
/// response's `authorization` header.
async fn sign_in(
    mut client: FlightClient,
    user: &str,
    password: &str,
) -> Result<String, ClientError> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut request = tonic::Request::new(futures::stream::iter([HandshakeRequest::default()]));
    let value = MetadataValue::try_from(format!("Basic {basic}"))
        .map_err(|e| ClientError::Decode(format!("credentials: {e}")))?;
    request.metadata_mut().insert("authorization", value);
    let response = client.handshake(request).await?;
    let header = response
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ClientError::Decode("the Handshake answered no bearer token".into()))?;
    header
        .strip_prefix("Bearer ")
        .map(str::to_string)
        .ok_or_else(|| ClientError::Decode(format!("the Handshake answered {header:?}")))
}

/// The causes of a transport error, which tonic's own message leaves out.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut source = e.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.join(": ")
}
