//! A client of the whole cluster: built from seed addresses, it finds the leader, follows
//! redirects by itself, retries what is safe to retry, and keeps one channel per node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_flight::FlightDescriptor;
use serde_json::Value;
use tokio::time::Instant;

use super::{Client, ClientError, ConnectOptions};

/// How long operations keep retrying a cluster that has no leader or an unreachable node.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Give up when nothing succeeded for this long (a leader election takes about a second).
    pub deadline: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
            backoff_min: Duration::from_millis(10),
            // Short: an election takes well under a second, and every retry is one small RPC.
            backoff_max: Duration::from_millis(100),
        }
    }
}

/// How long one node may take to say where the leader is.
const ASK_LEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Exponential backoff between retries, bounded by a deadline.
pub(crate) struct Backoff {
    policy: RetryPolicy,
    next: Duration,
    give_up_at: Instant,
}

impl Backoff {
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        Self {
            next: policy.backoff_min,
            give_up_at: Instant::now() + policy.deadline,
            policy: policy.clone(),
        }
    }

    /// Starts the deadline over (after progress).
    pub(crate) fn reset(&mut self) {
        self.next = self.policy.backoff_min;
        self.give_up_at = Instant::now() + self.policy.deadline;
    }

    /// Sleeps before the next attempt; `Err(last)` once the deadline has passed.
    pub(crate) async fn wait(&mut self, last: ClientError) -> Result<(), ClientError> {
        if Instant::now() + self.next > self.give_up_at {
            return Err(last);
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.policy.backoff_max);
        Ok(())
    }
}

/// True when the same request may succeed if sent again, possibly to another node. An
/// expired token is retryable: the connection is dropped, and the next one signs in again.
pub fn is_retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Connect { .. } => true,
        ClientError::Status(s) => {
            matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::Aborted
                    | tonic::Code::Unknown
                    | tonic::Code::Cancelled
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Internal
            ) || (s.code() == tonic::Code::Unauthenticated
                && s.message() == crate::wire::TOKEN_EXPIRED)
        }
        ClientError::Decode(_) | ClientError::Encode(_) => false,
    }
}

struct Inner {
    seeds: Vec<String>,
    retry: RetryPolicy,
    options: ConnectOptions,
    pool: Mutex<HashMap<String, Client>>,
    leader: Mutex<Option<String>>,
    next_replica: AtomicUsize,
}

/// A handle on the cluster; cheap to clone.
#[derive(Clone)]
pub struct ClusterClient {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClusterClient {
    /// Connects to the cluster through `seeds` (Flight locations such as
    /// `grpc://10.0.0.1:8815`) and finds its leader.
    pub async fn connect<S: AsRef<str>>(seeds: &[S]) -> Result<Self, ClientError> {
        Self::connect_with(seeds, RetryPolicy::default()).await
    }

    pub async fn connect_with<S: AsRef<str>>(
        seeds: &[S],
        retry: RetryPolicy,
    ) -> Result<Self, ClientError> {
        Self::connect_with_options(seeds, retry, ConnectOptions::default()).await
    }

    /// Like [`ClusterClient::connect_with`], reaching every node with TLS and credentials
    /// as `options` say.
    pub async fn connect_with_options<S: AsRef<str>>(
        seeds: &[S],
        retry: RetryPolicy,
        options: ConnectOptions,
    ) -> Result<Self, ClientError> {
        let seeds: Vec<String> = seeds.iter().map(|s| s.as_ref().to_string()).collect();
        if seeds.is_empty() {
            return Err(ClientError::Connect {
                addr: String::new(),
                reason: "no seed address given".into(),
            });
        }
        let client = Self {
            inner: Arc::new(Inner {
                seeds,
                retry,
                options,
                pool: Mutex::new(HashMap::new()),
                leader: Mutex::new(None),
                next_replica: AtomicUsize::new(0),
            }),
        };
        client.leader().await?;
        Ok(client)
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The pooled connection to the node at `addr`.
    pub async fn node(&self, addr: &str) -> Result<Client, ClientError> {
        if let Some(client) = lock(&self.inner.pool).get(addr) {
            return Ok(client.clone());
        }
        let client = Client::connect_with(addr, &self.inner.options).await?;
        lock(&self.inner.pool).insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// Drops the pooled connection to `addr` (after it failed), so that the next use reconnects.
    pub fn forget_node(&self, addr: &str) {
        lock(&self.inner.pool).remove(addr);
        let mut leader = lock(&self.inner.leader);
        if leader.as_deref() == Some(addr) {
            *leader = None;
        }
    }

    /// The leader's location as last learned, if any.
    pub fn known_leader(&self) -> Option<String> {
        lock(&self.inner.leader).clone()
    }

    /// Learns the leader from a redirect error; true when `e` was one.
    pub fn note_redirect(&self, e: &ClientError) -> bool {
        match e.leader() {
            Some(leader) => {
                *lock(&self.inner.leader) = Some(leader);
                true
            }
            None => false,
        }
    }

    /// The connection to the leader, found (and retried) within the retry deadline.
    pub async fn leader(&self) -> Result<Client, ClientError> {
        let mut backoff = Backoff::new(&self.inner.retry);
        loop {
            let error = match self.find_leader().await {
                Ok(addr) => match self.node(&addr).await {
                    Ok(client) => return Ok(client),
                    Err(e) => {
                        self.forget_node(&addr);
                        e
                    }
                },
                Err(e) => e,
            };
            backoff.wait(error).await?;
        }
    }

    /// Asks the known leader, then every seed, where the leader is (`streaming_write` flight
    /// info names it).
    async fn find_leader(&self) -> Result<String, ClientError> {
        if let Some(leader) = self.known_leader() {
            return Ok(leader);
        }
        let mut last = None;
        for seed in &self.inner.seeds {
            match self.ask_leader(seed).await {
                Ok(leader) => {
                    *lock(&self.inner.leader) = Some(leader.clone());
                    return Ok(leader);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Decode("no seeds".into())))
    }

    /// [`ClusterClient::ask_where_the_leader_is`], given up after [`ASK_LEADER_TIMEOUT`]: a
    /// node that stopped answering without closing its connection (paused, or its host cut
    /// off) must not hold up the search, which goes on to the next seed.
    async fn ask_leader(&self, addr: &str) -> Result<String, ClientError> {
        match tokio::time::timeout(ASK_LEADER_TIMEOUT, self.ask_where_the_leader_is(addr)).await {
            Ok(answer) => answer,
            Err(_) => {
                self.forget_node(addr);
                Err(ClientError::Status(tonic::Status::unavailable(format!(
                    "{addr} did not say where the leader is within {ASK_LEADER_TIMEOUT:?}"
                ))))
            }
        }
    }

    async fn ask_where_the_leader_is(&self, addr: &str) -> Result<String, ClientError> {
        let client = self.node(addr).await?;
        let descriptor = FlightDescriptor::new_path(vec!["streaming_write".into()]);
        let info = match client.flight().get_flight_info(descriptor).await {
            Ok(info) => info.into_inner(),
            Err(status) => {
                if status.code() != tonic::Code::Unavailable {
                    self.forget_node(addr);
                }
                return Err(status.into());
            }
        };
        info.endpoint
            .first()
            .and_then(|e| e.location.first())
            .map(|l| l.uri.clone())
            .ok_or_else(|| {
                ClientError::Decode("streaming_write flight info has no location".into())
            })
    }

    /// Runs an action on the leader, following redirects and retrying while the cluster has
    /// no leader, within the retry deadline. Only for actions that are safe to repeat.
    pub async fn action(&self, name: &str, body: &Value) -> Result<Value, ClientError> {
        self.action_bytes(name, super::action_body(body)).await
    }

    /// [`ClusterClient::action`] with a body as given (JSON, or a bare table name).
    pub async fn action_bytes(&self, name: &str, body: Vec<u8>) -> Result<Value, ClientError> {
        let mut backoff = Backoff::new(&self.inner.retry);
        loop {
            let leader = self.leader().await?;
            let error = match leader.action_bytes(name, body.clone()).await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if !is_retryable(&error) {
                return Err(error);
            }
            if !self.note_redirect(&error) {
                self.forget_node(leader.addr());
            }
            backoff.wait(error).await?;
        }
    }

    /// Flight locations of the live replicas serving `table`, from any node.
    pub async fn replicas(&self, table: &str) -> Result<Vec<String>, ClientError> {
        let descriptor = FlightDescriptor::new_path(vec![table.to_string()]);
        let leader = self.leader().await?;
        let info = leader
            .flight()
            .get_flight_info(descriptor)
            .await?
            .into_inner();
        Ok(info
            .endpoint
            .iter()
            .flat_map(|e| e.location.iter().map(|l| l.uri.clone()))
            .collect())
    }

    /// An exactly-once producer writing to `table`, on a new session of its id.
    pub async fn producer(
        &self,
        table: &str,
        config: super::ProducerConfig,
    ) -> Result<super::Producer, ClientError> {
        super::Producer::start(self.clone(), table, config).await
    }

    /// A reader of `table` that spreads reads over its live replicas.
    pub fn reader(&self, table: &str) -> super::Reader {
        super::Reader::new(self.clone(), table)
    }

    /// A rotating index, to spread reads over replicas.
    pub(crate) fn next_replica_index(&self) -> usize {
        self.inner.next_replica.fetch_add(1, Ordering::Relaxed)
    }
}
