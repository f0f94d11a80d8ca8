//! The cluster's certificates, made with `rampart pki` as an operator would: a CA, one member
//! certificate (server and client auth, for every address members and relays use) and a client
//! certificate with CN root.

use std::path::{Path, PathBuf};

use super::{run_command, HarnessError};

pub struct ClusterPki {
    pub dir: PathBuf,
}

impl ClusterPki {
    pub fn create(
        rampart: &Path,
        dir: &Path,
        hosts: &[String],
    ) -> Result<ClusterPki, HarnessError> {
        std::fs::create_dir_all(dir)?;
        let bin = rampart.to_string_lossy();
        let d = dir.to_string_lossy();
        run_command(&bin, &["pki", "init", "--dir", &d])?;
        let hosts = hosts.join(",");
        run_command(
            &bin,
            &[
                "pki",
                "issue",
                "member",
                "--profile",
                "peer",
                "--hosts",
                &hosts,
                "--dir",
                &d,
            ],
        )?;
        run_command(
            &bin,
            &[
                "pki",
                "issue",
                "client",
                "--profile",
                "client",
                "--cn",
                "root",
                "--dir",
                &d,
            ],
        )?;
        Ok(ClusterPki {
            dir: dir.to_path_buf(),
        })
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    pub fn client_tls(&self) -> Result<rampart_tls::ClientTls, HarnessError> {
        Ok(rampart_tls::ClientTls::new(
            rampart_tls::ClientTlsOptions {
                trusted_ca_file: Some(self.file("ca.pem").into()),
                cert_file: Some(self.file("client.pem").into()),
                key_file: Some(self.file("client-key.pem").into()),
                server_name_override: None,
                insecure_skip_verify: false,
            },
        )?)
    }
}
