//! The connection to the cluster: the first endpoint that answers, TLS as the flags say, an auth
//! token on every call when `--user` is given, and etcd's error texts for failed calls.

use std::time::Duration;

use rampart_proto::etcdserverpb as pb;
use rampart_tls::ClientTls;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use super::global::ConnSettings;
use crate::exit::{CtlError, CtlResult, ExitCode};

/// Adds the auth token (and `hasleader` where asked) to each request.
/// Shared by every service of one client, so a refreshed token reaches them all.
#[derive(Clone, Default)]
pub struct CallMetadata {
    token: std::sync::Arc<std::sync::RwLock<Option<AsciiMetadataValue>>>,
}

impl tonic::service::Interceptor for CallMetadata {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = self.token.read().ok().and_then(|t| t.clone()) {
            req.metadata_mut().insert("token", t);
        }
        Ok(req)
    }
}

/// Errors after which clientv3 fetches a new token (or, without credentials, simply retries).
const REFRESH_TOKEN_ERRORS: &[&str] = &[
    "etcdserver: revision of auth store is old",
    "etcdserver: invalid auth token",
];

pub type Svc = InterceptedService<Channel, CallMetadata>;

/// A connected client.
#[derive(Clone)]
pub struct Client {
    pub endpoint: String,
    pub channel: Channel,
    pub settings: ConnSettings,
    meta: CallMetadata,
}

/// Whether `url` is dialed with TLS.
fn wants_tls(url: &str, settings: &ConnSettings) -> bool {
    url.starts_with("https://") || (!url.contains("://") && settings.tls_by_default)
}

/// Dials one endpoint.
pub async fn dial(url: &str, settings: &ConnSettings) -> CtlResult<Channel> {
    let tls = if wants_tls(url, settings) {
        let options = settings.tls.clone().unwrap_or_default();
        Some(ClientTls::new(options).map_err(|e| CtlError::bad_args(e.to_string()))?)
    } else {
        None
    };
    rampart_tls::connect_channel(url, tls.as_ref(), settings.dial_timeout)
        .await
        .map_err(|e| CtlError::new(ExitCode::BadConnection, e.to_string()))
}

impl Client {
    /// Connects to the first endpoint that answers, in the order given.
    pub async fn connect(settings: &ConnSettings) -> CtlResult<Client> {
        let mut last = None;
        for ep in &settings.endpoints {
            match dial(ep, settings).await {
                Ok(channel) => {
                    let client = Client {
                        endpoint: ep.clone(),
                        channel,
                        settings: settings.clone(),
                        meta: CallMetadata::default(),
                    };
                    if let Some((user, password)) = &settings.auth {
                        client.authenticate(user, password).await?;
                    }
                    return Ok(client);
                }
                Err(e) if e.code == ExitCode::BadArgs => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| CtlError::bad_args("no endpoints given (--endpoints)")))
    }

    /// Connects to exactly `endpoint`.
    pub async fn connect_one(settings: &ConnSettings, endpoint: &str) -> CtlResult<Client> {
        let mut one = settings.clone();
        one.endpoints = vec![endpoint.to_string()];
        Client::connect(&one).await
    }

    async fn authenticate(&self, name: &str, password: &str) -> CtlResult<()> {
        let resp = match self
            .call(self.auth().authenticate(pb::AuthenticateRequest {
                name: name.to_string(),
                password: password.to_string(),
            }))
            .await
        {
            Ok(r) => r,
            // As clientv3: credentials for a cluster without auth are simply not needed.
            Err(e) if e.message == "etcdserver: authentication is not enabled" => return Ok(()),
            Err(e) => return Err(e),
        };
        let token: AsciiMetadataValue = MetadataValue::try_from(resp.token.as_str())
            .map_err(|_| CtlError::error("the server returned a malformed auth token"))?;
        if let Ok(mut t) = self.meta.token.write() {
            *t = Some(token);
        }
        Ok(())
    }

    fn svc(&self) -> Svc {
        InterceptedService::new(self.channel.clone(), self.meta.clone())
    }

    pub fn kv(&self) -> pb::kv_client::KvClient<Svc> {
        pb::kv_client::KvClient::new(self.svc())
    }
    pub fn watch(&self) -> pb::watch_client::WatchClient<Svc> {
        pb::watch_client::WatchClient::new(self.svc())
    }
    pub fn lease(&self) -> pb::lease_client::LeaseClient<Svc> {
        pb::lease_client::LeaseClient::new(self.svc())
    }
    pub fn cluster(&self) -> pb::cluster_client::ClusterClient<Svc> {
        pb::cluster_client::ClusterClient::new(self.svc())
    }
    pub fn maintenance(&self) -> pb::maintenance_client::MaintenanceClient<Svc> {
        pb::maintenance_client::MaintenanceClient::new(self.svc())
    }
    pub fn auth(&self) -> pb::auth_client::AuthClient<Svc> {
        pb::auth_client::AuthClient::new(self.svc())
    }

    /// Runs a call, and once more after refreshing the auth token when the server says the
    /// token or the auth store revision it carries is stale (clientv3 does the same).
    pub async fn call_refreshing<T, F, Fut>(&self, make: F) -> CtlResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        match self.call(make()).await {
            Err(e) if REFRESH_TOKEN_ERRORS.contains(&e.message.as_str()) => {
                if let Some((user, password)) = &self.settings.auth {
                    self.authenticate(user, password).await?;
                }
                self.call(make()).await
            }
            other => other,
        }
    }

    /// Runs one unary call within `--command-timeout`.
    pub async fn call<T>(
        &self,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> CtlResult<T> {
        self.call_within(self.settings.command_timeout, fut).await
    }

    pub async fn call_within<T>(
        &self,
        timeout: Duration,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> CtlResult<T> {
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => {
                if let Some(explained) = self.explain_refusal(&status).await {
                    return Err(CtlError::error(explained));
                }
                // Connection and TLS failures get their one-line explanation only.
                if !matches!(status.code(), Code::Unavailable | Code::Unknown) {
                    retry_warning(&self.endpoint, &status);
                }
                Err(CtlError::error(status_text(&self.endpoint, &status)))
            }
            Err(_) => Err(CtlError::error("context deadline exceeded")),
        }
    }
}

impl Client {
    /// A call that died with its connection (canceled underneath us, or unavailable without a
    /// TLS reason in its error) over TLS: asks a fresh handshake why the server refused us, so a
    /// missing client certificate is named whichever way the race with the alert went.
    async fn explain_refusal(&self, status: &Status) -> Option<String> {
        let unexplained = match status.code() {
            Code::Cancelled => true,
            Code::Unavailable | Code::Unknown => {
                status_text(&self.endpoint, status).starts_with("rpc error:")
            }
            _ => false,
        };
        if !unexplained || !wants_tls(&self.endpoint, &self.settings) {
            return None;
        }
        let tls = ClientTls::new(self.settings.tls.clone().unwrap_or_default()).ok()?;
        rampart_tls::explain_refusal(&self.endpoint, &tls, REFUSAL_PROBE_WAIT).await
    }
}

/// How long the refusal probe waits for a server's alert after its handshake.
const REFUSAL_PROBE_WAIT: Duration = Duration::from_secs(1);

/// clientv3's retry interceptor logs every failed unary call as a zap warning on stderr;
/// scripts and etcd's own tests look for it ("retrying of unary invoker failed").
fn retry_warning(endpoint: &str, status: &Status) {
    let now = time::OffsetDateTime::now_utc();
    let ts = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    );
    let host = endpoint.split("://").last().unwrap_or(endpoint);
    let nanos = now.unix_timestamp_nanos() as u128;
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (nanos >> 32) as u32,
        std::process::id() & 0xffff,
        (nanos >> 8) & 0xfff,
        nanos & 0xfff,
        (nanos >> 12) & 0xffff_ffff_ffff
    );
    let error = format!(
        "rpc error: code = {} desc = {}",
        code_name(status.code()),
        status.message()
    );
    eprintln!(
        "{{\"level\":\"warn\",\"ts\":\"{ts}\",\"caller\":\"clientv3/retry_interceptor.go:62\",\"msg\":\"retrying of unary invoker failed\",\"target\":\"endpoint://client-{id}/{host}\",\"attempt\":0,\"error\":{}}}",
        serde_json::to_string(&error).unwrap_or_default()
    );
}

/// The text etcdctl prints for a failed call: etcd's own error texts as they are, other gRPC
/// errors as grpc-go spells them, connection and TLS failures explained.
pub fn status_text(endpoint: &str, status: &Status) -> String {
    let msg = status.message();
    if msg.starts_with("etcdserver: ") || msg.starts_with("mvcc: ") || msg.starts_with("auth: ") {
        return msg.to_string();
    }
    if status.code() == Code::Unavailable || status.code() == Code::Unknown {
        let explained = rampart_tls::explain::explain_status(endpoint, status);
        if explained != format!("{endpoint}: {msg}") {
            return explained;
        }
    }
    format!(
        "rpc error: code = {} desc = {}",
        code_name(status.code()),
        msg
    )
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}
