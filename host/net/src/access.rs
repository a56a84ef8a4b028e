//! What a node lets its clients and jobs do: the role each certificate
//! carries, checked per request, and the directories job files may read and
//! write.
//!
//! A certificate's role is the organizational unit of its subject
//! (`weir:node`, `weir:admin`, `weir:client`), set by `weir cluster init` and
//! `weir cluster issue`. A client may ingest and read; an admin may also
//! create streams, submit, patch and cancel jobs; a node may do everything
//! (node-to-node traffic). A certificate without a role is a client.

use std::path::{Component, Path, PathBuf};

use rustls_pki_types::CertificateDer;

use crate::NetError;
use crate::protocol::Request;

/// What a certificate may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Ingest into streams and read streams, job status and history.
    Client,
    /// Everything a client may, and create streams, submit, patch and cancel jobs.
    Admin,
    /// Another node of the cluster: everything.
    Node,
}

impl Role {
    /// Every role, by name.
    pub const ALL: [Role; 3] = [Role::Node, Role::Admin, Role::Client];

    /// The role's name (`node`, `admin`, `client`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Admin => "admin",
            Role::Client => "client",
        }
    }

    /// The organizational unit that marks a certificate with this role.
    pub fn unit(self) -> String {
        format!("weir:{}", self.name())
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The role a peer's certificate carries (a client when it names none,
    /// or it does not parse: the least a certificate of the CA may do).
    pub fn of(cert: &CertificateDer<'_>) -> Role {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
            return Role::Client;
        };
        cert.subject()
            .iter_organizational_unit()
            .filter_map(|unit| unit.as_str().ok())
            .filter_map(|unit| unit.strip_prefix("weir:").and_then(Role::parse))
            .max()
            .unwrap_or(Role::Client)
    }

    /// Whether this role may make `request`.
    pub fn allows(self, request: &Request) -> bool {
        use crate::cluster::ClusterRequest;
        match (self, request) {
            (Role::Node, _) => true,
            // Only a node's certificate makes a process a member.
            (role, Request::Cluster(c)) => match c {
                ClusterRequest::Status => true,
                // Maintenance is an administrator's.
                ClusterRequest::Drain { .. } => role == Role::Admin,
                ClusterRequest::Forwarded(inner) => matches!(**inner, ClusterRequest::Status),
                _ => false,
            },
            // Job streams flow between members only.
            (
                _,
                Request::Pull { .. }
                | Request::Hold { .. }
                | Request::Module { .. }
                | Request::Backup { .. }
                | Request::ShadowUdf { .. }
                | Request::Replicate { .. },
            ) => false,
            (Role::Admin, _) => true,
            (Role::Client, request) => matches!(
                request,
                Request::Ping
                    | Request::ListStreams
                    | Request::Ingest { .. }
                    | Request::Read { .. }
                    | Request::JobStatus { .. }
                    | Request::UdfHistory { .. }
                    | Request::UdfLogs { .. }
            ),
        }
    }
}

/// The directories a node's jobs may read files from and write files to.
#[derive(Debug, Clone, Default)]
pub struct FileAccess {
    /// Files under these may be read and written (canonical paths).
    allowed: Vec<PathBuf>,
    /// Never, even under an allowed directory: the node's data and keys.
    denied: Vec<PathBuf>,
}

impl FileAccess {
    /// Jobs may use files under `allowed`, except under `denied`. Each
    /// allowed directory must exist.
    pub fn new(allowed: &[PathBuf], denied: &[PathBuf]) -> Result<FileAccess, NetError> {
        let mut access = FileAccess::default();
        for dir in allowed {
            let canonical = std::fs::canonicalize(dir).map_err(|e| {
                NetError::Invalid(format!(
                    "--files {}: cannot use this directory: {e}",
                    dir.display()
                ))
            })?;
            if !canonical.is_dir() {
                return Err(NetError::Invalid(format!(
                    "--files {}: not a directory",
                    dir.display()
                )));
            }
            access.allowed.push(canonical);
        }
        for dir in denied {
            if let Ok(canonical) = std::fs::canonicalize(dir) {
                access.denied.push(canonical);
            }
        }
        Ok(access)
    }

    /// Whether a job may read or write `path` (absolute); the error says why not.
    pub fn check(&self, path: &Path) -> Result<(), String> {
        let real = real_path(path)?;
        let listed = |dirs: &[PathBuf]| {
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.allowed.is_empty() {
            return Err(format!(
                "{}: this node gives jobs no files; start it with `--files DIR` for the directories jobs may read and write",
                path.display()
            ));
        }
        if let Some(dir) = self.denied.iter().find(|d| real.starts_with(d)) {
            return Err(format!(
                "{}: {} holds the node's own data or keys, which jobs may not touch",
                path.display(),
                dir.display()
            ));
        }
        if !self.allowed.iter().any(|d| real.starts_with(d)) {
            return Err(format!(
                "{}: outside the directories this node gives jobs ({})",
                path.display(),
                listed(&self.allowed)
            ));
        }
        Ok(())
    }
}

/// `path` with every symbolic link of its existing part resolved; the part
/// that does not exist yet may not climb (`..`).
fn real_path(path: &Path) -> Result<PathBuf, String> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        let Some(name) = existing.file_name() else {
            break;
        };
        rest.push(name.to_os_string());
        if !existing.pop() {
            break;
        }
    }
    let mut real = std::fs::canonicalize(&existing)
        .map_err(|e| format!("{}: cannot resolve: {e}", path.display()))?;
    for part in rest.iter().rev() {
        if Path::new(part)
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(format!("{}: `..` in a path", path.display()));
        }
        real.push(part);
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_node_pulls_job_streams_or_changes_the_metadata() {
        let pull = Request::Pull {
            stream: "q5@1.Bid".into(),
            from: 0,
            reader: "pull/q5@1/Bid@2".into(),
            behind: false,
        };
        let propose = Request::Cluster(crate::cluster::ClusterRequest::Propose(
            serde_json::json!({"CancelJob": {"name": "q5"}}),
        ));
        let module = Request::Module {
            version: "ab".repeat(32),
        };
        let backup = Request::Backup {
            job: "q5".into(),
            id: 1,
            vertex: "Bid".into(),
            have: None,
            since: None,
            member: Some(2),
        };
        let hold = Request::Hold {
            stream: "q5@1.Bid".into(),
            reader: "pull/q5@1/Bid@2".into(),
            seq: 7,
        };
        let shadow = Request::ShadowUdf {
            job: "tally".into(),
            copy: "tally__p0".into(),
            origin: "v2.wasm".into(),
            rows: 10,
        };
        for request in [&pull, &hold, &propose, &module, &backup, &shadow] {
            assert!(Role::Node.allows(request), "{request:?}");
            assert!(!Role::Admin.allows(request), "admin: {request:?}");
            assert!(!Role::Client.allows(request), "client: {request:?}");
        }
    }

    #[test]
    fn files_are_confined_to_the_allowed_directories_without_the_denied() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["jobs/out", "data", "elsewhere"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("data/node.key"), "secret").unwrap();
        let access = FileAccess::new(&[root.to_path_buf()], &[root.join("data")]).unwrap();
        assert!(access.check(&root.join("jobs/in.jsonl")).is_ok());
        assert!(access.check(&root.join("jobs/new/dir/out.jsonl")).is_ok());
        let e = access.check(&root.join("data/node.key")).unwrap_err();
        assert!(e.contains("the node's own data or keys"), "{e}");
        let e = access.check(Path::new("/etc/passwd")).unwrap_err();
        assert!(e.contains("outside the directories"), "{e}");
        // A link from inside to outside is where it points.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", root.join("jobs/etc")).unwrap();
            assert!(access.check(&root.join("jobs/etc/passwd")).is_err());
            std::os::unix::fs::symlink(root.join("data"), root.join("jobs/d")).unwrap();
            assert!(access.check(&root.join("jobs/d/node.key")).is_err());
        }
        let narrow = FileAccess::new(&[root.join("jobs")], &[]).unwrap();
        assert!(narrow.check(&root.join("elsewhere/x")).is_err());
        let e = FileAccess::default()
            .check(&root.join("jobs/in.jsonl"))
            .unwrap_err();
        assert!(e.contains("--files"), "{e}");
    }
}
