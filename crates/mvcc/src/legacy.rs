//! Backends written before the history table: versions under `(key, main)` in `kv`, and the
//! change log `(main, sub)` → key in `revs`. Opening one moves its versions into the history
//! table in the same transaction that creates it, so an upgrade keeps every key.

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};

use crate::codec::{encode_record, Version};
use crate::store::HISTORY;

const LEGACY_KV: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("kv");
const LEGACY_REVS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("revs");

/// Moves a legacy layout's versions into the history table; does nothing for a current one.
pub(crate) fn migrate(txn: &WriteTransaction) -> Result<(), redb::Error> {
    let legacy = txn
        .list_tables()?
        .any(|t| t.name() == LEGACY_KV.name() || t.name() == LEGACY_REVS.name());
    if !legacy {
        return Ok(());
    }
    {
        let kv = txn.open_table(LEGACY_KV)?;
        let revs = txn.open_table(LEGACY_REVS)?;
        let mut history = txn.open_table(HISTORY)?;
        for item in revs.iter()? {
            let (rev, key) = item?;
            let (main, sub) = rev.value();
            let key = key.value();
            let Some(stored) = kv.get((key, main))? else {
                continue;
            };
            let version = Version::decode(stored.value())
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            history.insert((main, sub), encode_record(key, &version).as_slice())?;
        }
    }
    txn.delete_table(LEGACY_KV)?;
    txn.delete_table(LEGACY_REVS)?;
    tracing::info!("moved the backend's versions into the history table");
    Ok(())
}
