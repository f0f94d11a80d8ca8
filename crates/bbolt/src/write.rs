//! Writing a new, compact bbolt file from top-level buckets of sorted key/values.
//!
//! Layout: pages 0 and 1 are the meta pages (txids 0 and 1, as `bbolt.Open` initialises a new
//! file), page 2 is an empty freelist, and the buckets' trees follow with no free pages, so
//! bbolt's `Tx.Check` finds every page reachable. Small buckets are stored inline in their
//! parent, as bbolt does; larger ones get leaf pages filled up to the page size (a value larger
//! than a page gets overflow pages) under as many branch levels as needed.

use std::collections::BTreeMap;

use crate::page::{
    put_u32, put_u64, Meta, PageHeader, BRANCH_ELEMENT_SIZE, BRANCH_PAGE, BUCKET_HEADER_SIZE,
    BUCKET_LEAF_FLAG, DEFAULT_PAGE_SIZE, FREELIST_PAGE, LEAF_ELEMENT_SIZE, LEAF_PAGE, MAGIC,
    META_PAGE, PAGE_HEADER_SIZE, VERSION,
};
use crate::Error;

/// Top-level buckets by name, each with its key/values (both sorted by the map).
pub type Buckets = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

/// First page id after the two meta pages and the freelist page.
const FIRST_DATA_PAGE: u64 = 3;
const FREELIST_PGID: u64 = 2;

/// One leaf element to place: key, value and leaf flags.
struct Item<'a> {
    key: &'a [u8],
    value: &'a [u8],
    flags: u32,
}

/// Builds the pages of a file.
struct Builder {
    out: Vec<u8>,
    page_size: usize,
    next: u64,
}

/// The bytes of a bbolt file holding `buckets`, with 4 KiB pages.
pub fn write_db(buckets: &Buckets) -> Result<Vec<u8>, Error> {
    let page_size = DEFAULT_PAGE_SIZE;
    let mut b = Builder {
        out: vec![0; page_size * FIRST_DATA_PAGE as usize],
        page_size,
        next: FIRST_DATA_PAGE,
    };
    // Each bucket's value in the root bucket: its header, and for an inline bucket its page.
    let mut values = Vec::with_capacity(buckets.len());
    for (name, kvs) in buckets {
        let items: Vec<Item<'_>> = kvs
            .iter()
            .map(|(k, v)| Item {
                key: k,
                value: v,
                flags: 0,
            })
            .collect();
        let value = match inline_page(&items, page_size) {
            Some(page) => {
                let mut v = vec![0u8; BUCKET_HEADER_SIZE];
                v.extend_from_slice(&page);
                v
            }
            None => {
                let root = b.tree(&items)?;
                let mut v = vec![0u8; BUCKET_HEADER_SIZE];
                put_u64(&mut v, 0, root);
                v
            }
        };
        values.push((name.as_slice(), value));
    }
    let root_items: Vec<Item<'_>> = values
        .iter()
        .map(|(name, value)| Item {
            key: name,
            value,
            flags: BUCKET_LEAF_FLAG,
        })
        .collect();
    let root = b.tree(&root_items)?;

    // An empty freelist: the file has no free pages.
    let fl = FREELIST_PGID as usize * page_size;
    PageHeader {
        id: FREELIST_PGID,
        flags: FREELIST_PAGE,
        count: 0,
        overflow: 0,
    }
    .write(&mut b.out[fl..]);

    for txid in 0..2u64 {
        let meta = Meta {
            magic: MAGIC,
            version: VERSION,
            page_size: page_size as u32,
            flags: 0,
            root,
            sequence: 0,
            freelist: FREELIST_PGID,
            pgid: b.next,
            txid,
            checksum: 0,
        };
        let at = txid as usize * page_size;
        PageHeader {
            id: txid,
            flags: META_PAGE,
            count: 0,
            overflow: 0,
        }
        .write(&mut b.out[at..]);
        b.out[at + PAGE_HEADER_SIZE..at + PAGE_HEADER_SIZE + crate::page::META_SIZE]
            .copy_from_slice(&meta.encode());
    }
    debug_assert_eq!(b.out.len(), b.next as usize * page_size);
    Ok(b.out)
}

/// bbolt's size of a leaf node holding `items`.
fn leaf_size(items: &[Item<'_>]) -> usize {
    PAGE_HEADER_SIZE
        + items
            .iter()
            .map(|i| LEAF_ELEMENT_SIZE + i.key.len() + i.value.len())
            .sum::<usize>()
}

/// The inline page of a bucket small enough to live in its parent's value (bbolt's
/// `inlineable`: one leaf no larger than a quarter page, no nested buckets).
fn inline_page(items: &[Item<'_>], page_size: usize) -> Option<Vec<u8>> {
    let size = leaf_size(items);
    if size > page_size / 4 || items.iter().any(|i| i.flags & BUCKET_LEAF_FLAG != 0) {
        return None;
    }
    let mut page = vec![0u8; size];
    encode_leaf(&mut page, 0, items);
    Some(page)
}

/// Writes a leaf page image (`page` is exactly `leaf_size(items)` or larger).
fn encode_leaf(page: &mut [u8], id: u64, items: &[Item<'_>]) {
    let pages = page.len().div_ceil(DEFAULT_PAGE_SIZE).max(1);
    PageHeader {
        id,
        flags: LEAF_PAGE,
        count: items.len() as u16,
        // Inline pages (id 0) never overflow; this is only meaningful for real pages.
        overflow: if id == 0 { 0 } else { pages as u32 - 1 },
    }
    .write(page);
    let mut data = PAGE_HEADER_SIZE + items.len() * LEAF_ELEMENT_SIZE;
    for (n, item) in items.iter().enumerate() {
        let at = PAGE_HEADER_SIZE + n * LEAF_ELEMENT_SIZE;
        put_u32(page, at, item.flags);
        // Positions are relative to the element.
        put_u32(page, at + 4, (data - at) as u32);
        put_u32(page, at + 8, item.key.len() as u32);
        put_u32(page, at + 12, item.value.len() as u32);
        page[data..data + item.key.len()].copy_from_slice(item.key);
        data += item.key.len();
        page[data..data + item.value.len()].copy_from_slice(item.value);
        data += item.value.len();
    }
}

impl Builder {
    /// Allocates the pages for a node of `size` bytes; returns its id and byte range.
    fn allocate(&mut self, size: usize) -> (u64, std::ops::Range<usize>) {
        let pages = size.div_ceil(self.page_size).max(1);
        let id = self.next;
        self.next += pages as u64;
        let start = self.out.len();
        self.out.resize(start + pages * self.page_size, 0);
        (id, start..self.out.len())
    }

    /// Writes the tree holding `items` and returns its root page.
    fn tree(&mut self, items: &[Item<'_>]) -> Result<u64, Error> {
        for item in items {
            if item.key.is_empty() {
                return Err(Error::EmptyKey);
            }
            if u32::try_from(item.key.len() + item.value.len()).is_err() {
                return Err(Error::TooLarge {
                    len: item.key.len() + item.value.len(),
                });
            }
        }
        // Leaves, filled up to a page (a single element may need more: overflow pages).
        if items.is_empty() {
            let (id, range) = self.allocate(PAGE_HEADER_SIZE);
            encode_leaf(&mut self.out[range], id, items);
            return Ok(id);
        }
        let mut level: Vec<(&[u8], u64)> = Vec::new();
        let mut start = 0;
        while start < items.len() {
            let mut end = start;
            let mut size = PAGE_HEADER_SIZE;
            while end < items.len() {
                let add = LEAF_ELEMENT_SIZE + items[end].key.len() + items[end].value.len();
                if end > start && (size + add > self.page_size || end - start == u16::MAX as usize)
                {
                    break;
                }
                size += add;
                end += 1;
            }
            let group = &items[start..end];
            let (id, range) = self.allocate(leaf_size(group));
            encode_leaf(&mut self.out[range], id, group);
            level.push((group[0].key, id));
            start = end;
        }
        // Branch levels until one root remains; a branch element's key is its child's first key.
        while level.len() > 1 {
            let mut next_level = Vec::new();
            let mut start = 0;
            while start < level.len() {
                let mut end = start;
                let mut size = PAGE_HEADER_SIZE;
                while end < level.len() {
                    let add = BRANCH_ELEMENT_SIZE + level[end].0.len();
                    // At least two children per branch, so every level shrinks.
                    if end > start + 1 && size + add > self.page_size {
                        break;
                    }
                    size += add;
                    end += 1;
                }
                let group = &level[start..end];
                let (id, range) = self.allocate(size);
                let page = &mut self.out[range];
                let pages = page.len() / self.page_size;
                PageHeader {
                    id,
                    flags: BRANCH_PAGE,
                    count: group.len() as u16,
                    overflow: pages as u32 - 1,
                }
                .write(page);
                let mut data = PAGE_HEADER_SIZE + group.len() * BRANCH_ELEMENT_SIZE;
                for (n, (key, child)) in group.iter().enumerate() {
                    let at = PAGE_HEADER_SIZE + n * BRANCH_ELEMENT_SIZE;
                    put_u32(page, at, (data - at) as u32);
                    put_u32(page, at + 4, key.len() as u32);
                    put_u64(page, at + 8, *child);
                    page[data..data + key.len()].copy_from_slice(key);
                    data += key.len();
                }
                next_level.push((group[0].0, id));
                start = end;
            }
            level = next_level;
        }
        Ok(level[0].1)
    }
}
