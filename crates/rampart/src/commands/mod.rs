//! One module per subcommand family; each parses its own flags and calls a library crate.

pub mod cfssl;
pub mod etcd_ca;
pub mod pki;
pub mod proxy;
pub mod server;
pub mod up;
