//! Starting a member: find out whether the data dir holds an earlier run (restart) or not (a new
//! member of a new cluster), check the data dir belongs to the cluster the flags describe, and open
//! the WAL, the Raft log and the MVCC store.
//!
//! Data dir layout (as etcd's): `member/wal/` (or `--wal-dir`), `member/snap/db` (the MVCC
//! backend), `member/cluster.json` (the member list).

use std::path::{Path, PathBuf};

use raft::eraftpb::ConfState;
use rampart_apply::Applier;
use rampart_raft_node::RaftStorage;
use rampart_wal::{Wal, WalContents};

use crate::conf_recovery;
use crate::ids;
use crate::membership::{Member, Membership};
use crate::settings::ServerSettings;
use crate::ServerError;

pub struct Bootstrapped {
    pub member_id: u64,
    pub membership: Membership,
    pub wal: Wal,
    pub storage: RaftStorage,
    pub applier: Applier,
    /// True when this run created the member (first start of a new cluster).
    pub fresh: bool,
    pub last_snapshot_index: u64,
}

pub struct DataDir {
    pub member: PathBuf,
    pub wal: PathBuf,
    pub snap: PathBuf,
}

impl DataDir {
    pub fn new(settings: &ServerSettings) -> DataDir {
        let member = settings.data_dir.join("member");
        DataDir {
            wal: settings
                .wal_dir
                .clone()
                .unwrap_or_else(|| member.join("wal")),
            snap: member.join("snap"),
            member,
        }
    }

    fn db(&self) -> PathBuf {
        self.snap.join("db")
    }

    fn cluster_file(&self) -> PathBuf {
        self.member.join("cluster.json")
    }
}

/// WAL metadata: the member and cluster this log belongs to.
fn encode_metadata(member_id: u64, cluster_id: u64) -> Vec<u8> {
    rampart_wal::encode_member_metadata(member_id, cluster_id)
}

fn decode_metadata(bytes: &[u8], wal_dir: &Path) -> Result<(u64, u64), ServerError> {
    rampart_wal::decode_member_metadata(bytes).ok_or_else(|| {
        ServerError::Config(format!(
            "the WAL in {} has no member metadata: it was not written by rampart",
            wal_dir.display()
        ))
    })
}

/// The members the flags describe (`--initial-cluster`), with etcd's IDs.
pub fn initial_members(settings: &ServerSettings) -> Vec<Member> {
    settings
        .initial_cluster
        .iter()
        .map(|(name, urls)| Member {
            id: ids::member_id(urls, &settings.initial_cluster_token),
            name: name.clone(),
            peer_urls: urls.clone(),
            client_urls: vec![],
            is_learner: false,
        })
        .collect()
}

/// What the existing members said about the cluster a new member joins
/// (`--initial-cluster-state=existing` after `member add`).
#[derive(Debug, Clone)]
pub struct JoinInfo {
    pub cluster_id: u64,
    pub members: Vec<Member>,
}

/// Whether this member has no log yet and is to join a running cluster.
pub fn joins_existing_cluster(settings: &ServerSettings) -> bool {
    !settings.initial_cluster_state_new && !Wal::exists(&DataDir::new(settings).wal)
}

pub fn bootstrap(
    settings: &ServerSettings,
    join: Option<JoinInfo>,
) -> Result<Bootstrapped, ServerError> {
    let dirs = DataDir::new(settings);
    let io = |what: &str, p: &Path| {
        let p = p.to_path_buf();
        let what = what.to_string();
        move |e| ServerError::io(format!("{what} {}", p.display()), e)
    };
    create_private_dir(&dirs.member).map_err(io("cannot create", &dirs.member))?;
    create_private_dir(&dirs.snap).map_err(io("cannot create", &dirs.snap))?;

    let members = initial_members(settings);
    let flag_member = members
        .iter()
        .find(|m| m.name == settings.name)
        .map(|m| m.id);
    let flag_cluster = ids::cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());

    if Wal::exists(&dirs.wal) {
        let (mut wal, mut contents) = Wal::open(&dirs.wal)?;
        let (member_id, cluster_id) = decode_metadata(&contents.metadata, &dirs.wal)?;
        if settings.initial_cluster_state_new && !settings.force_new_cluster {
            if let Some(expected) = flag_member {
                if expected != member_id || flag_cluster != cluster_id {
                    return Err(ServerError::Config(format!(
                        "data dir {} belongs to member {member_id:x} of cluster {cluster_id:x}, but the flags \
                         describe member {expected:x} of cluster {flag_cluster:x}: start this member with its own \
                         data dir, or move {} away to bootstrap a new member",
                        settings.data_dir.display(),
                        settings.data_dir.display()
                    )));
                }
            }
        }
        let membership = if settings.force_new_cluster && !dirs.cluster_file().exists() {
            // A `backup` keeps no member list: this member starts a new one.
            Membership::new(cluster_id, vec![], dirs.cluster_file())
        } else {
            Membership::load(&dirs.cluster_file())?
        };
        if membership.cluster_id() != cluster_id {
            return Err(ServerError::Config(format!(
                "cluster ID mismatch: the WAL says {cluster_id:x}, {} says {:x}: the data dir is damaged or mixed up",
                dirs.cluster_file().display(),
                membership.cluster_id()
            )));
        }
        let applier = open_applier(&dirs, settings)?;
        let last_snapshot_index = contents.snapshot.as_ref().map(|s| s.index).unwrap_or(0);
        conf_recovery::raise_commit_to_known(&mut contents, applier.consistent_index());
        // Without a snapshot in the WAL, the saved member list is the configuration.
        let mut conf_state = conf_recovery::conf_at_applied(
            &contents,
            conf_state_of(&membership.members()),
            applier.consistent_index(),
        );
        if settings.force_new_cluster {
            let me = Member {
                id: member_id,
                name: settings.name.clone(),
                peer_urls: settings.initial_advertise_peer_urls.clone(),
                client_urls: vec![],
                is_learner: false,
            };
            conf_state = conf_recovery::force_new_cluster(
                &mut wal,
                &mut contents,
                &conf_state,
                &membership,
                me,
            )?;
        }
        let storage = recover_storage(contents, conf_state)?;
        tracing::info!(
            member_id = format!("{member_id:x}"),
            cluster_id = format!("{cluster_id:x}"),
            applied_index = applier.consistent_index(),
            "restarting member from its data dir"
        );
        return Ok(Bootstrapped {
            member_id,
            membership,
            wal,
            storage,
            applier,
            fresh: false,
            last_snapshot_index,
        });
    }

    if !settings.initial_cluster_state_new {
        return join_cluster(settings, &dirs, join);
    }
    let Some(member_id) = flag_member else {
        return Err(ServerError::Config(format!(
            "couldn't find local name {:?} in the initial cluster configuration: add {}=<peer url> to --initial-cluster",
            settings.name, settings.name
        )));
    };
    if std::fs::metadata(dirs.db()).is_ok() {
        return Err(ServerError::Config(format!(
            "member {member_id:x} has already been bootstrapped: {} exists without a WAL; remove the data dir {} \
             to start this member anew",
            dirs.db().display(),
            settings.data_dir.display()
        )));
    }
    let membership = Membership::new(flag_cluster, members.clone(), dirs.cluster_file());
    membership.save()?;
    create_private_dir(&dirs.wal).map_err(io("cannot create", &dirs.wal))?;
    let wal = Wal::create(&dirs.wal, &encode_metadata(member_id, flag_cluster))?;
    let applier = open_applier(&dirs, settings)?;
    let conf_state = conf_state_of(&members);
    let storage = RaftStorage::recover(None, Default::default(), &[], Some(conf_state))
        .map_err(|e| ServerError::Storage(format!("cannot set up the raft log: {e}")))?;
    tracing::info!(
        member_id = format!("{member_id:x}"),
        cluster_id = format!("{flag_cluster:x}"),
        members = members.len(),
        "starting a new member of a new cluster"
    );
    Ok(Bootstrapped {
        member_id,
        membership,
        wal,
        storage,
        applier,
        fresh: true,
        last_snapshot_index: 0,
    })
}

/// A new member of a running cluster: the member list comes from the existing members (this
/// member must have been added with `member add`), the log from the leader.
fn join_cluster(
    settings: &ServerSettings,
    dirs: &DataDir,
    join: Option<JoinInfo>,
) -> Result<Bootstrapped, ServerError> {
    let Some(join) = join else {
        return Err(ServerError::Config(
            "--initial-cluster-state=existing: no member in --initial-cluster answered with the member list; \
             start this member once the cluster runs and its peer URLs are reachable"
                .to_string(),
        ));
    };
    let mut own = settings.initial_advertise_peer_urls.clone();
    own.sort();
    let Some(me) = join.members.iter().find(|m| {
        let mut urls = m.peer_urls.clone();
        urls.sort();
        urls == own
    }) else {
        return Err(ServerError::Config(format!(
            "no member with peer URLs {} has been added to cluster {:x}: run `etcdctl member add {} --peer-urls={}` first",
            own.join(","),
            join.cluster_id,
            settings.name,
            own.join(",")
        )));
    };
    let member_id = me.id;
    let mut members = join.members.clone();
    for m in &mut members {
        if m.id == member_id {
            m.name = settings.name.clone();
        }
    }
    if std::fs::metadata(dirs.db()).is_ok() {
        return Err(ServerError::Config(format!(
            "member {member_id:x} has already been bootstrapped: {} exists without a WAL; remove the data dir {} \
             to start this member anew",
            dirs.db().display(),
            settings.data_dir.display()
        )));
    }
    let membership = Membership::new(join.cluster_id, members.clone(), dirs.cluster_file());
    membership.save()?;
    create_private_dir(&dirs.wal)
        .map_err(|e| ServerError::io(format!("cannot create {}", dirs.wal.display()), e))?;
    let wal = Wal::create(&dirs.wal, &encode_metadata(member_id, join.cluster_id))?;
    let applier = open_applier(dirs, settings)?;
    let conf_state = conf_state_of(&members);
    let storage = RaftStorage::recover(None, Default::default(), &[], Some(conf_state))
        .map_err(|e| ServerError::Storage(format!("cannot set up the raft log: {e}")))?;
    tracing::info!(
        member_id = format!("{member_id:x}"),
        cluster_id = format!("{:x}", join.cluster_id),
        members = members.len(),
        "joining an existing cluster"
    );
    Ok(Bootstrapped {
        member_id,
        membership,
        wal,
        storage,
        applier,
        fresh: false,
        last_snapshot_index: 0,
    })
}

/// Raft's configuration for a member list: voters, and learners apart.
fn conf_state_of(members: &[Member]) -> ConfState {
    let mut conf_state = ConfState::default();
    for m in members {
        if m.is_learner {
            conf_state.learners.push(m.id);
        } else {
            conf_state.voters.push(m.id);
        }
    }
    conf_state
}

fn recover_storage(contents: WalContents, conf: ConfState) -> Result<RaftStorage, ServerError> {
    RaftStorage::recover(
        contents.snapshot,
        contents.hard_state,
        &contents.entries,
        Some(conf),
    )
    .map_err(|e| ServerError::Storage(format!("cannot rebuild the raft log from the WAL: {e}")))
}

fn open_applier(dirs: &DataDir, settings: &ServerSettings) -> Result<Applier, ServerError> {
    let min_ttl = rampart_lease::min_ttl_seconds(
        settings.heartbeat_interval,
        settings.election_ticks() as u64,
    );
    let lessor = std::sync::Arc::new(rampart_lease::Lessor::new(min_ttl));
    Applier::open_with_lessor(&dirs.db(), lessor).map_err(|e| {
        ServerError::Storage(format!(
            "cannot open the backend {}: {e}",
            dirs.db().display()
        ))
    })
}

/// Data dirs are private to the member (etcd uses 0700).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
