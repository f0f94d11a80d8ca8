//! etcd's errors for KV requests: exact texts (clients match on them) and gRPC codes, as in
//! etcd's `rpctypes`.

use rampart_mvcc::MvccError;
use tonic::Code;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: key is not provided")]
    KeyNotProvided,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// The backend quota is exhausted (a NOSPACE alarm is raised).
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// A v3 auth refusal (permission denied, old auth revision, ...).
    #[error(transparent)]
    Auth(#[from] rampart_auth::AuthError),
    /// A request kind this member cannot apply yet (named), rather than silently ignoring it.
    #[error("etcdserver: rampart cannot apply {0} requests yet")]
    Unsupported(&'static str),
    /// The store failed; the member stops rather than diverging.
    #[error("etcdserver: backend failure: {0}")]
    Backend(String),
}

impl ApplyError {
    /// The gRPC code etcd sends with this error.
    pub fn grpc_code(&self) -> Code {
        match self {
            ApplyError::Compacted | ApplyError::FutureRevision => Code::OutOfRange,
            ApplyError::KeyNotProvided
            | ApplyError::ValueProvided
            | ApplyError::LeaseProvided
            | ApplyError::KeyNotFound
            | ApplyError::TooManyOps
            | ApplyError::DuplicateKey
            | ApplyError::InvalidSortOption => Code::InvalidArgument,
            ApplyError::LeaseNotFound => Code::NotFound,
            ApplyError::LeaseExists => Code::FailedPrecondition,
            ApplyError::LeaseTtlTooLarge => Code::OutOfRange,
            ApplyError::NoSpace => Code::ResourceExhausted,
            ApplyError::Auth(e) => e.grpc_code(),
            ApplyError::Unsupported(_) => Code::Unimplemented,
            ApplyError::Backend(_) => Code::Internal,
        }
    }
}

impl From<MvccError> for ApplyError {
    fn from(e: MvccError) -> Self {
        match e {
            MvccError::Compacted => ApplyError::Compacted,
            MvccError::FutureRevision => ApplyError::FutureRevision,
            other => ApplyError::Backend(other.to_string()),
        }
    }
}
