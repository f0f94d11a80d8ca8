//! Writing a new, compact bbolt file from top-level buckets of sorted key/values.
//!
//! Layout: pages 0 and 1 are the meta pages (txids 0 and 1, as `bbolt.Open` initialises a new
//! file), page 2 is an empty freelist, and the buckets' trees follow with no free pages, so
//! bbolt's `Tx.Check` finds every page reachable. Small buckets are stored inline in their
//! parent, as bbolt does; larger ones get leaf pages filled up to the page size (a value larger
//! than a page gets overflow pages) under as many branch levels as needed.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};

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

/// A top-level bucket to write, borrowing its name and key/values (sorted by key, unique).
pub type BucketSlices<'a> = (&'a [u8], Vec<(&'a [u8], &'a [u8])>);

/// Builds the pages of a file, writing each page as soon as it is complete so memory stays
/// bounded by one node, not the file.
struct Builder<'w, W> {
    out: &'w mut W,
    page_size: usize,
    next: u64,
}

/// The bytes of a bbolt file holding `buckets`, with 4 KiB pages.
pub fn write_db(buckets: &Buckets) -> Result<Vec<u8>, Error> {
    let slices: Vec<BucketSlices<'_>> = buckets
        .iter()
        .map(|(name, kvs)| {
            let kvs = kvs
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_slice()))
                .collect();
            (name.as_slice(), kvs)
        })
        .collect();
    let mut out = std::io::Cursor::new(Vec::new());
    write_buckets(&mut out, &slices)?;
    Ok(out.into_inner())
}

/// Writes a bbolt file holding `buckets` (sorted by name, each sorted by key, no duplicates)
/// to `out` from its start; returns the file's size.
pub fn write_buckets<W: Write + Seek>(
    out: &mut W,
    buckets: &[BucketSlices<'_>],
) -> Result<u64, Error> {
    let sorted = |names: &mut dyn Iterator<Item = &[u8]>| {
        let mut prev: Option<&[u8]> = None;
        for n in names {
            if prev.is_some_and(|p| p >= n) {
                return Err(Error::Unsorted {
                    key: String::from_utf8_lossy(n).into_owned(),
                });
            }
            prev = Some(n);
        }
        Ok(())
    };
    sorted(&mut buckets.iter().map(|b| b.0))?;
    for (_, kvs) in buckets {
        sorted(&mut kvs.iter().map(|kv| kv.0))?;
    }
    let page_size = DEFAULT_PAGE_SIZE;
    // Metas and freelist are written last, once the root is known; data starts after them.
    out.seek(SeekFrom::Start(page_size as u64 * FIRST_DATA_PAGE))?;
    let mut b = Builder {
        out,
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
        values.push((*name, value));
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
    let high_water = b.next;

    let mut head = vec![0u8; page_size * FIRST_DATA_PAGE as usize];
    // An empty freelist: the file has no free pages.
    let fl = FREELIST_PGID as usize * page_size;
    PageHeader {
        id: FREELIST_PGID,
        flags: FREELIST_PAGE,
        count: 0,
        overflow: 0,
    }
    .write(&mut head[fl..]);
    for txid in 0..2u64 {
        let meta = Meta {
            magic: MAGIC,
            version: VERSION,
            page_size: page_size as u32,
            flags: 0,
            root,
            sequence: 0,
            freelist: FREELIST_PGID,
            pgid: high_water,
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
        .write(&mut head[at..]);
        head[at + PAGE_HEADER_SIZE..at + PAGE_HEADER_SIZE + crate::page::META_SIZE]
            .copy_from_slice(&meta.encode());
    }
    b.out.seek(SeekFrom::Start(0))?;
    b.out.write_all(&head)?;
    b.out.flush()?;
    Ok(high_water * page_size as u64)
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

impl<W: Write + Seek> Builder<'_, W> {
    /// Allocates the pages for a node of `size` bytes; returns its id and a zeroed image.
    fn allocate(&mut self, size: usize) -> (u64, Vec<u8>) {
        let pages = size.div_ceil(self.page_size).max(1);
        let id = self.next;
        self.next += pages as u64;
        (id, vec![0u8; pages * self.page_size])
    }

    /// Writes a node's pages; nodes are allocated and written in page order.
    fn emit(&mut self, page: &[u8]) -> Result<(), Error> {
        self.out.write_all(page)?;
        Ok(())
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
            let (id, mut page) = self.allocate(PAGE_HEADER_SIZE);
            encode_leaf(&mut page, id, items);
            self.emit(&page)?;
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
            let (id, mut page) = self.allocate(leaf_size(group));
            encode_leaf(&mut page, id, group);
            self.emit(&page)?;
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
                let (id, mut page) = self.allocate(size);
                let pages = page.len() / self.page_size;
                PageHeader {
                    id,
                    flags: BRANCH_PAGE,
                    count: group.len() as u16,
                    overflow: pages as u32 - 1,
                }
                .write(&mut page);
                let mut data = PAGE_HEADER_SIZE + group.len() * BRANCH_ELEMENT_SIZE;
                for (n, (key, child)) in group.iter().enumerate() {
                    let at = PAGE_HEADER_SIZE + n * BRANCH_ELEMENT_SIZE;
                    put_u32(&mut page, at, (data - at) as u32);
                    put_u32(&mut page, at + 4, key.len() as u32);
                    put_u64(&mut page, at + 8, *child);
                    page[data..data + key.len()].copy_from_slice(key);
                    data += key.len();
                }
                self.emit(&page)?;
                next_level.push((group[0].0, id));
                start = end;
            }
            level = next_level;
        }
        Ok(level[0].1)
    }
}
