//! `v3electionpb.Election`: leader election over a key prefix, etcd's `concurrency.Election`
//! run in the member. Campaign blocks until the caller leads `name`; the leader proclaims
//! values and resigns; Leader and Observe tell who leads.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use rampart_proto::etcdserverpb::{request_op, DeleteRangeRequest, RequestOp, TxnRequest};
use rampart_proto::mvccpb::event::EventType;
use rampart_proto::v3electionpb::election_server::Election;
use rampart_proto::v3electionpb::*;
use tonic::{Request, Status};

use super::recipes::{created_at, get_op, owner_key, put_op, range_kv, Recipes};
use crate::etcdserver::EtcdServer;

/// etcd's texts (plain errors on etcd's side, so gRPC code Unknown).
fn missing_leader() -> Status {
    Status::unknown("\"leader\" field must be provided")
}

fn not_leader() -> Status {
    Status::unknown("election: not leader")
}

fn no_leader() -> Status {
    Status::unknown("election: no leader")
}

pub struct ElectionService {
    server: Arc<EtcdServer>,
}

impl ElectionService {
    pub fn new(server: Arc<EtcdServer>) -> ElectionService {
        ElectionService { server }
    }
}

/// Sets the leader key's value, if `leader` still leads (its key has its create revision).
async fn proclaim(
    recipes: &Recipes,
    leader: &LeaderKey,
    value: &[u8],
) -> Result<ProclaimResponse, Status> {
    let resp = recipes
        .txn(TxnRequest {
            compare: vec![created_at(&leader.key, leader.rev)],
            success: vec![put_op(&leader.key, value, leader.lease)],
            failure: vec![],
        })
        .await?;
    if !resp.succeeded {
        return Err(not_leader());
    }
    Ok(ProclaimResponse {
        header: resp.header,
    })
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<tonic::Response<CampaignResponse>, Status> {
        let recipes = Recipes::for_request(self.server.clone(), &request);
        let CampaignRequest { name, lease, value } = request.into_inner();
        let lease = recipes.session_lease(lease).await?;
        let key = owner_key(&name, lease);
        let resp = recipes
            .txn(TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![put_op(&key, &value, lease)],
                failure: vec![get_op(&key)],
            })
            .await?;
        let mut leader = LeaderKey {
            name: name.clone(),
            key: key.clone(),
            rev: resp.header.as_ref().map(|h| h.revision).unwrap_or(0),
            lease,
        };
        if !resp.succeeded {
            // This lease already campaigns: keep its place, with the new value.
            let existing = range_kv(&resp, 0).ok_or_else(not_leader)?;
            leader.rev = existing.create_revision;
            if existing.value != value {
                if let Err(e) = proclaim(&recipes, &leader, &value).await {
                    let _ = resign(&recipes, &leader).await;
                    return Err(e);
                }
            }
        }
        recipes.wait_deletes(&name, leader.rev - 1).await?;
        Ok(tonic::Response::new(CampaignResponse {
            header: resp.header,
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<tonic::Response<ProclaimResponse>, Status> {
        let recipes = Recipes::for_request(self.server.clone(), &request);
        let ProclaimRequest { leader, value } = request.into_inner();
        let leader = leader.ok_or_else(missing_leader)?;
        Ok(tonic::Response::new(
            proclaim(&recipes, &leader, &value).await?,
        ))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<tonic::Response<LeaderResponse>, Status> {
        let recipes = Recipes::for_request(self.server.clone(), &request);
        let (header, kv) = recipes.first_created(&request.get_ref().name).await?;
        let kv = kv.ok_or_else(no_leader)?;
        Ok(tonic::Response::new(LeaderResponse {
            header,
            kv: Some(kv),
        }))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<tonic::Response<Self::ObserveStream>, Status> {
        let recipes = Recipes::for_request(self.server.clone(), &request);
        let name = request.into_inner().name;
        Ok(tonic::Response::new(Box::pin(observe(recipes, name))))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<tonic::Response<ResignResponse>, Status> {
        let recipes = Recipes::for_request(self.server.clone(), &request);
        let leader = request.into_inner().leader.ok_or_else(missing_leader)?;
        Ok(tonic::Response::new(resign(&recipes, &leader).await?))
    }
}

/// Deletes the leader key if `leader` still leads.
async fn resign(recipes: &Recipes, leader: &LeaderKey) -> Result<ResignResponse, Status> {
    let delete = RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: leader.key.clone(),
                ..Default::default()
            },
        )),
    };
    let resp = recipes
        .txn(TxnRequest {
            compare: vec![created_at(&leader.key, leader.rev)],
            success: vec![delete],
            failure: vec![],
        })
        .await?;
    Ok(ResignResponse {
        header: resp.header,
    })
}

/// Every leader of `name` in turn, and every value each proclaims (etcd's Election.Observe).
fn observe(recipes: Recipes, name: Vec<u8>) -> impl Stream<Item = Result<LeaderResponse, Status>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let result: Result<(), Status> = async {
            loop {
                let (header, kv) = recipes.first_created(&name).await?;
                let (mut header, kv) = match kv {
                    Some(kv) => (header, kv),
                    None => {
                        // No leader yet: wait for the first key put under the prefix.
                        let from = header.map(|h| h.revision).unwrap_or(0);
                        let mut prefix = name.clone();
                        prefix.push(b'/');
                        let end = super::recipes::prefix_end(&prefix);
                        let mut events = recipes.watch(&prefix, &end, from).await?;
                        loop {
                            let Some(resp) = next_event(&mut events, &tx).await? else {
                                return Ok(());
                            };
                            let put = resp
                                .events
                                .iter()
                                .find(|e| e.r#type == EventType::Put as i32)
                                .and_then(|e| e.kv.clone());
                            if let Some(kv) = put {
                                let mut header = resp.header;
                                if let Some(h) = header.as_mut() {
                                    h.revision = kv.mod_revision;
                                }
                                break (header, kv);
                            }
                        }
                    }
                };
                let from = header.as_ref().map(|h| h.revision).unwrap_or(0) + 1;
                let key = kv.key.clone();
                if tx
                    .send(Ok(LeaderResponse {
                        header: header.take(),
                        kv: Some(kv),
                    }))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
                let mut events = recipes.watch(&key, &[], from).await?;
                'leader: loop {
                    let Some(resp) = next_event(&mut events, &tx).await? else {
                        return Ok(());
                    };
                    for event in &resp.events {
                        if event.r#type == EventType::Delete as i32 {
                            break 'leader;
                        }
                        let update = LeaderResponse {
                            header: resp.header,
                            kv: event.kv.clone(),
                        };
                        if tx.send(Ok(update)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
        }
        .await;
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The next watch response, or `None` once the observer went away (so an abandoned observer's
/// task and watch end at once, not at the leader's next change).
async fn next_event<S>(
    events: &mut S,
    observer: &tokio::sync::mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<Option<rampart_proto::etcdserverpb::WatchResponse>, Status>
where
    S: Stream<Item = rampart_proto::etcdserverpb::WatchResponse> + Unpin,
{
    tokio::select! {
        resp = events.next() => resp
            .map(Some)
            .ok_or_else(|| Status::unavailable("etcdserver: server stopped")),
        _ = observer.closed() => Ok(None),
    }
}
