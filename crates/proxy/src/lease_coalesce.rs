//! `etcdserverpb.Lease` served by the proxy, with keep-alives coalesced.
//!
//! However many clients keep one lease alive, the proxy renews it on a member at most once per
//! renewal cadence — a third of its TTL, the cadence etcd's own client renews at — over one
//! keep-alive stream shared by every lease. A keep-alive that arrives soon after a renewal is
//! answered from it with the TTL the lease really has left (the granted TTL minus the time since
//! the renewal), so a client never believes its lease lives longer than it does; requests that
//! arrive while a renewal is in flight all get its answer. Grant, revoke, time-to-live and list
//! pass through (reads are retried on another member when theirs fails).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt as _};
use rampart_proto::etcdserverpb::lease_client::LeaseClient;
use rampart_proto::etcdserverpb::lease_server::Lease;
use rampart_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

use crate::metrics::ProxyMetrics;
use crate::upstream::Upstreams;
use crate::upstream_call::{self, Retry, NO_MEMBER_REACHABLE};

/// A renewal the member has not answered within this is sent again (on a fresh stream).
pub const RENEWAL_TIMEOUT: Duration = Duration::from_secs(5);
/// A client keep-alive waits this long for a renewal before it fails with Unavailable.
pub const CLIENT_KEEPALIVE_WAIT: Duration = Duration::from_secs(10);

/// How long one renewal answers keep-alives for a lease granted `ttl` seconds.
pub fn renewal_cadence(ttl: i64) -> Duration {
    Duration::from_millis((ttl.max(0) as u64) * 1000 / 3)
}

/// The TTL to report `elapsed` after a renewal that granted `granted` seconds (whole seconds
/// left, rounded down).
pub fn remaining_ttl(granted: i64, elapsed: Duration) -> i64 {
    (granted - elapsed.as_secs() as i64).max(0)
}

type Waiter = oneshot::Sender<Result<LeaseKeepAliveResponse, Status>>;

#[derive(Default)]
struct LeaseEntry {
    /// The member's last answer and when it came (only answers with a TTL above zero).
    renewed: Option<(Instant, LeaseKeepAliveResponse)>,
    /// When the renewal now awaited was sent.
    in_flight: Option<Instant>,
    waiters: Vec<Waiter>,
}

struct Coalescer {
    leases: Mutex<HashMap<i64, LeaseEntry>>,
    /// Lease IDs to renew, for the task that owns the keep-alive stream to a member. Unbounded
    /// on purpose: a lease is queued at most once per [`RENEWAL_TIMEOUT`].
    stream: Mutex<Option<mpsc::UnboundedSender<i64>>>,
    upstreams: Arc<Upstreams>,
    metrics: Arc<ProxyMetrics>,
}

impl Coalescer {
    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<i64, LeaseEntry>> {
        self.leases.lock().expect("leases")
    }

    async fn keep_alive(self: &Arc<Self>, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
        self.metrics.lease_keepalives_received.inc();
        let rx = {
            let mut leases = self.leases();
            let entry = leases.entry(id).or_default();
            if let Some((at, answer)) = &entry.renewed {
                if at.elapsed() < renewal_cadence(answer.ttl) {
                    return Ok(LeaseKeepAliveResponse {
                        ttl: remaining_ttl(answer.ttl, at.elapsed()),
                        ..*answer
                    });
                }
            }
            let (tx, rx) = oneshot::channel();
            entry.waiters.push(tx);
            let send = entry
                .in_flight
                .is_none_or(|sent| sent.elapsed() > RENEWAL_TIMEOUT);
            if send {
                entry.in_flight = Some(Instant::now());
            }
            drop(leases);
            if send {
                self.send_renewal(id);
            }
            rx
        };
        match tokio::time::timeout(CLIENT_KEEPALIVE_WAIT, rx).await {
            Ok(Ok(answer)) => answer,
            _ => Err(Status::unavailable(NO_MEMBER_REACHABLE)),
        }
    }

    fn send_renewal(self: &Arc<Self>, id: i64) {
        self.metrics.lease_keepalives_forwarded.inc();
        let mut stream = self.stream.lock().expect("keep-alive stream");
        if let Some(tx) = stream.as_ref() {
            if tx.send(id).is_ok() {
                return;
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(id);
        *stream = Some(tx);
        tokio::spawn(self.clone().relay(rx));
    }

    /// The lease was revoked through the proxy: nothing cached answers for it any more.
    fn forget(&self, id: i64) {
        if let Some(entry) = self.leases().get_mut(&id) {
            entry.renewed = None;
        }
    }

    fn answered(&self, answer: LeaseKeepAliveResponse) {
        let mut leases = self.leases();
        let Some(entry) = leases.get_mut(&answer.id) else {
            return;
        };
        entry.in_flight = None;
        entry.renewed = (answer.ttl > 0).then(|| (Instant::now(), answer));
        for waiter in entry.waiters.drain(..) {
            let _ = waiter.send(Ok(answer));
        }
        if entry.renewed.is_none() {
            leases.remove(&answer.id);
        }
    }

    /// Lease IDs with clients waiting (to send again on a new stream).
    fn awaited(&self) -> Vec<i64> {
        self.leases()
            .iter()
            .filter(|(_, e)| !e.waiters.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }

    fn fail_waiters(&self, status: &Status) {
        for entry in self.leases().values_mut() {
            entry.in_flight = None;
            for waiter in entry.waiters.drain(..) {
                let _ = waiter.send(Err(status.clone()));
            }
        }
    }

    /// Owns the keep-alive stream to a member; moves to another member when it fails, and
    /// gives up (failing the waiting clients) when none answers.
    async fn relay(self: Arc<Self>, mut ids: mpsc::UnboundedReceiver<i64>) {
        let mut pending: Vec<i64> = Vec::new();
        for (url, channel) in self.upstreams.candidates() {
            let (tx, rx) = mpsc::unbounded_channel::<LeaseKeepAliveRequest>();
            for id in pending.drain(..).chain(self.awaited()) {
                let _ = tx.send(LeaseKeepAliveRequest { id });
            }
            let outgoing = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
            let mut responses = match LeaseClient::new(channel).lease_keep_alive(outgoing).await {
                Ok(r) => r.into_inner(),
                Err(status) => {
                    tracing::debug!(url, error = %status, "proxy: keep-alive stream refused");
                    self.upstreams.mark_down(&url);
                    continue;
                }
            };
            loop {
                tokio::select! {
                    id = ids.recv() => match id {
                        Some(id) => {
                            if tx.send(LeaseKeepAliveRequest { id }).is_err() {
                                pending.push(id);
                            }
                        }
                        // Every sender is gone: the proxy is shutting down.
                        None => return,
                    },
                    answer = responses.next() => match answer {
                        Some(Ok(answer)) => {
                            self.upstreams.mark_up(&url);
                            self.answered(answer);
                        }
                        Some(Err(status)) if !upstream_call::member_failed(&status) => {
                            self.fail_waiters(&status);
                            break;
                        }
                        Some(Err(_)) | None => {
                            self.upstreams.mark_down(&url);
                            break;
                        }
                    },
                }
            }
        }
        self.fail_waiters(&Status::unavailable(NO_MEMBER_REACHABLE));
        *self.stream.lock().expect("keep-alive stream") = None;
    }
}

pub struct LeaseProxy {
    coalescer: Arc<Coalescer>,
}

impl LeaseProxy {
    pub fn new(upstreams: Arc<Upstreams>, metrics: Arc<ProxyMetrics>) -> LeaseProxy {
        LeaseProxy {
            coalescer: Arc::new(Coalescer {
                leases: Mutex::new(HashMap::new()),
                stream: Mutex::new(None),
                upstreams,
                metrics,
            }),
        }
    }

    async fn pass<Req: Clone, Resp, F, Fut>(
        &self,
        retry: Retry,
        request: Request<Req>,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        F: Fn(LeaseClient<tonic::transport::Channel>, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
    {
        let c = &self.coalescer;
        let metadata = upstream_call::forwarded_metadata(request.metadata());
        upstream_call::call(
            &c.upstreams,
            &c.metrics,
            retry,
            &metadata,
            request.into_inner(),
            |channel, req| call(LeaseClient::new(channel), req),
        )
        .await
    }
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

/// Counts the client's keep-alive stream while it is open.
struct StreamGauge(Arc<ProxyMetrics>);

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.0.client_lease_keepalive_streams.dec();
    }
}

#[tonic::async_trait]
impl Lease for LeaseProxy {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        self.pass(Retry::OnlyIfNotSent, request, |mut c, r| async move {
            c.lease_grant(r).await
        })
        .await
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let id = request.get_ref().id;
        let answer = self
            .pass(Retry::OnlyIfNotSent, request, |mut c, r| async move {
                c.lease_revoke(r).await
            })
            .await;
        self.coalescer.forget(id);
        answer
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let coalescer = self.coalescer.clone();
        coalescer.metrics.client_lease_keepalive_streams.inc();
        let gauge = StreamGauge(coalescer.metrics.clone());
        let incoming = request.into_inner();
        // One request at a time per client stream: answers come back in the order asked.
        let answers = incoming
            .take_while(|r| std::future::ready(r.is_ok()))
            .then(move |r| {
                let coalescer = coalescer.clone();
                async move {
                    let id = r.map(|r| r.id).unwrap_or_default();
                    coalescer.keep_alive(id).await
                }
            })
            .map(move |answer| {
                let _ = &gauge;
                answer
            });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.pass(Retry::Safe, request, |mut c, r| async move {
            c.lease_time_to_live(r).await
        })
        .await
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.pass(Retry::Safe, request, |mut c, r| async move {
            c.lease_leases(r).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cadence_is_a_third_of_the_ttl() {
        assert_eq!(renewal_cadence(30), Duration::from_secs(10));
        assert_eq!(renewal_cadence(1), Duration::from_millis(333));
        assert_eq!(renewal_cadence(0), Duration::ZERO);
    }

    #[test]
    fn remaining_ttl_counts_down_whole_seconds_and_never_below_zero() {
        assert_eq!(remaining_ttl(30, Duration::from_millis(0)), 30);
        assert_eq!(remaining_ttl(30, Duration::from_millis(999)), 30);
        assert_eq!(remaining_ttl(30, Duration::from_millis(1000)), 29);
        assert_eq!(remaining_ttl(5, Duration::from_secs(9)), 0);
    }
}
