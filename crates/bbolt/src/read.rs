//! Reading a bbolt file: choosing the meta page as bbolt does, walking bucket trees (branch and
//! leaf pages, overflow, nested and inline buckets) in key order, and bbolt's integrity check.
//!
//! The whole file is held in memory: snapshot files are read once, front to back, and this keeps
//! every page access a bounds-checked slice instead of a memory map that a truncated file turns
//! into a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::page::{
    u32_at, u64_at, Meta, MetaProblem, PageHeader, BRANCH_ELEMENT_SIZE, BRANCH_PAGE,
    BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, DEFAULT_PAGE_SIZE, FREELIST_COUNT_OVERFLOW,
    FREELIST_PAGE, LEAF_ELEMENT_SIZE, LEAF_PAGE, META_SIZE, NO_FREELIST, PAGE_HEADER_SIZE,
};
use crate::Error;

/// Deepest branch nesting we follow; a real tree of 4 KiB pages is a handful of levels deep, so
/// anything deeper is a page cycle in a corrupt file.
const MAX_TREE_DEPTH: usize = 64;

/// An opened (read-only) bbolt file.
#[derive(Debug)]
pub struct Db {
    data: Vec<u8>,
    page_size: usize,
    meta: Meta,
}

/// A bucket: the root page of its tree, or its inline page.
#[derive(Debug, Clone, Copy)]
pub struct Bucket<'a> {
    pub root: u64,
    pub sequence: u64,
    /// The page stored in the parent's value, for an inline bucket (`root == 0`).
    inline: Option<&'a [u8]>,
}

/// A value in a bucket: plain bytes or a nested bucket.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Plain(&'a [u8]),
    Bucket(Bucket<'a>),
}

impl<'a> Value<'a> {
    pub fn as_bucket(&self) -> Option<Bucket<'a>> {
        match self {
            Value::Bucket(b) => Some(*b),
            Value::Plain(_) => None,
        }
    }
}

impl Db {
    /// Reads and opens the file at `path`.
    pub fn open(path: &Path) -> Result<Db, Error> {
        let data = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Db::from_bytes(data)
    }

    /// Opens a file's bytes with bbolt's checks and in its order, so the first problem reported
    /// is the one bbolt (and so etcdctl) reports.
    pub fn from_bytes(data: Vec<u8>) -> Result<Db, Error> {
        if data.is_empty() {
            return Err(Error::Empty);
        }
        // bbolt reads one 4 KiB page to learn the page size from the first meta page.
        if data.len() < DEFAULT_PAGE_SIZE {
            return Err(Error::Invalid);
        }
        let mut page_size = DEFAULT_PAGE_SIZE;
        let meta0 = Meta::parse(&data[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + META_SIZE]);
        if meta0.validate().is_ok() {
            page_size = meta0.page_size as usize;
        }
        if page_size < PAGE_HEADER_SIZE + META_SIZE || data.len() < page_size * 2 {
            return Err(Error::TooSmall);
        }
        let off1 = page_size + PAGE_HEADER_SIZE;
        let meta1 = Meta::parse(&data[off1..off1 + META_SIZE]);
        let (err0, err1) = (meta0.validate(), meta1.validate());
        if let (Err(e), Err(_)) = (err0, err1) {
            return Err(match e {
                MetaProblem::Invalid => Error::Invalid,
                MetaProblem::VersionMismatch => Error::VersionMismatch,
                MetaProblem::Checksum => Error::Checksum,
            });
        }
        // The newer valid meta wins; the older one is the fallback after a torn meta write.
        let (newer, older) = if meta1.txid > meta0.txid {
            (meta1, meta0)
        } else {
            (meta0, meta1)
        };
        let meta = if newer.validate().is_ok() {
            newer
        } else {
            older
        };
        Ok(Db {
            data,
            page_size,
            meta,
        })
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The meta page in use.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// bbolt's `Tx.Size()`: the bytes up to the high-water mark.
    pub fn size(&self) -> u64 {
        self.meta.pgid * self.page_size as u64
    }

    /// The root bucket, whose entries are the top-level buckets.
    pub fn root(&self) -> Bucket<'_> {
        Bucket {
            root: self.meta.root,
            sequence: self.meta.sequence,
            inline: None,
        }
    }

    /// A page's header and its bytes (including overflow pages).
    fn page(&self, id: u64) -> Result<(PageHeader, &[u8]), Error> {
        let start = (id as usize)
            .checked_mul(self.page_size)
            .filter(|s| s.saturating_add(PAGE_HEADER_SIZE) <= self.data.len())
            .ok_or(Error::PageOutOfFile { id })?;
        let header = PageHeader::parse(&self.data[start..]);
        let len = (header.overflow as usize + 1).saturating_mul(self.page_size);
        let end = start.saturating_add(len).min(self.data.len());
        Ok((header, &self.data[start..end]))
    }

    /// All entries of `bucket`, in key order.
    pub fn entries<'a>(&'a self, bucket: &Bucket<'a>) -> Result<Vec<(&'a [u8], Value<'a>)>, Error> {
        let mut out = Vec::new();
        self.for_each(bucket, |k, v| {
            out.push((k, v));
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with each entry of `bucket` in key order.
    pub fn for_each<'a>(
        &'a self,
        bucket: &Bucket<'a>,
        mut f: impl FnMut(&'a [u8], Value<'a>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        match bucket.inline {
            Some(page) => leaf_entries(page, 0, &mut f),
            None => self.walk(bucket.root, 0, &mut f),
        }
    }

    /// The nested bucket `name` of `parent`, if there is one.
    pub fn bucket<'a>(
        &'a self,
        parent: &Bucket<'a>,
        name: &[u8],
    ) -> Result<Option<Bucket<'a>>, Error> {
        let mut found = None;
        self.for_each(parent, |k, v| {
            if k == name {
                found = v.as_bucket();
            }
            Ok(())
        })?;
        Ok(found)
    }

    fn walk<'a>(
        &'a self,
        id: u64,
        depth: usize,
        f: &mut impl FnMut(&'a [u8], Value<'a>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if depth > MAX_TREE_DEPTH {
            return Err(Error::TooDeep { id });
        }
        let (header, page) = self.page(id)?;
        if header.flags & LEAF_PAGE != 0 {
            leaf_entries(page, id, f)
        } else if header.flags & BRANCH_PAGE != 0 {
            for child in branch_children(page, id)? {
                self.walk(child.1, depth + 1, f)?;
            }
            Ok(())
        } else {
            Err(Error::PageType {
                id,
                found: header.type_name(),
            })
        }
    }

    /// The ids on the freelist page, or `None` when the file does not persist its freelist.
    fn freelist(&self) -> Result<Option<Vec<u64>>, Error> {
        if self.meta.freelist == NO_FREELIST {
            return Ok(None);
        }
        let (header, page) = self.page(self.meta.freelist)?;
        if header.flags & FREELIST_PAGE == 0 {
            return Err(Error::PageType {
                id: header.id,
                found: header.type_name(),
            });
        }
        let mut start = PAGE_HEADER_SIZE;
        let mut count = header.count as usize;
        if header.count == FREELIST_COUNT_OVERFLOW {
            count = element(page, start, 8, self.meta.freelist).map(|b| u64_at(b, 0) as usize)?;
            start += 8;
        }
        let mut ids = Vec::with_capacity(count.min(page.len() / 8));
        for i in 0..count {
            ids.push(u64_at(
                element(page, start + i * 8, 8, self.meta.freelist)?,
                0,
            ));
        }
        Ok(Some(ids))
    }

    /// bbolt's `Tx.Check`: pages freed twice, referenced twice, out of bounds, of the wrong
    /// type, or neither reachable nor free. Messages are bbolt's, because etcdctl prints them.
    pub fn check(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let freelist = match self.freelist() {
            Ok(list) => list,
            Err(e) => return vec![e.to_string()],
        };
        let mut freed = BTreeSet::new();
        for id in freelist.iter().flatten() {
            if !freed.insert(*id) {
                errors.push(format!("page {id}: already freed"));
            }
        }
        let mut reachable: BTreeMap<u64, ()> = BTreeMap::new();
        reachable.insert(0, ());
        reachable.insert(1, ());
        if self.meta.freelist != NO_FREELIST {
            let overflow = self
                .page(self.meta.freelist)
                .map(|p| p.0.overflow)
                .unwrap_or(0);
            for i in 0..=u64::from(overflow) {
                reachable.insert(self.meta.freelist + i, ());
            }
        }
        let mut checker = Checker {
            db: self,
            reachable,
            freed: &freed,
            errors: &mut errors,
        };
        checker.bucket(&self.root());
        let reachable = checker.reachable;
        // Without a persisted freelist bbolt rebuilds it from the unreachable pages, so
        // nothing can be unreachable and unfreed.
        if freelist.is_some() {
            for id in 0..self.meta.pgid {
                if !reachable.contains_key(&id) && !freed.contains(&id) {
                    errors.push(format!("page {id}: unreachable unfreed"));
                }
            }
        }
        errors
    }
}

struct Checker<'c> {
    db: &'c Db,
    reachable: BTreeMap<u64, ()>,
    freed: &'c BTreeSet<u64>,
    errors: &'c mut Vec<String>,
}

impl Checker<'_> {
    fn bucket(&mut self, b: &Bucket<'_>) {
        if b.inline.is_none() && b.root != 0 {
            self.pages(b.root, 0);
        }
        let entries = match self.db.entries(b) {
            Ok(e) => e,
            Err(e) => {
                self.errors.push(e.to_string());
                return;
            }
        };
        for (_, v) in entries {
            if let Value::Bucket(child) = v {
                self.bucket(&child);
            }
        }
    }

    fn pages(&mut self, id: u64, depth: usize) {
        if depth > MAX_TREE_DEPTH {
            self.errors.push(Error::TooDeep { id }.to_string());
            return;
        }
        let (header, page) = match self.db.page(id) {
            Ok(p) => p,
            Err(e) => {
                self.errors.push(e.to_string());
                return;
            }
        };
        if header.id > self.db.meta.pgid {
            self.errors.push(format!(
                "page {}: out of bounds: {}",
                header.id, self.db.meta.pgid
            ));
        }
        for i in 0..=u64::from(header.overflow) {
            let pid = header.id + i;
            if self.reachable.insert(pid, ()).is_some() {
                self.errors.push(format!("page {pid}: multiple references"));
            }
        }
        if self.freed.contains(&header.id) {
            self.errors
                .push(format!("page {}: reachable freed", header.id));
        } else if header.flags & (BRANCH_PAGE | LEAF_PAGE) == 0 {
            self.errors.push(format!(
                "page {}: invalid type: {}",
                header.id,
                header.type_name()
            ));
        }
        if header.flags & BRANCH_PAGE != 0 {
            match branch_children(page, id) {
                Ok(children) => {
                    for (_, child) in children {
                        self.pages(child, depth + 1);
                    }
                }
                Err(e) => self.errors.push(e.to_string()),
            }
        }
    }
}

/// `len` bytes at `off` of page `id`, or the corruption error.
fn element(page: &[u8], off: usize, len: usize, id: u64) -> Result<&[u8], Error> {
    off.checked_add(len)
        .filter(|end| *end <= page.len())
        .map(|end| &page[off..end])
        .ok_or(Error::Truncated { id })
}

/// A branch page's (first key, child page) pairs.
fn branch_children(page: &[u8], id: u64) -> Result<Vec<(&[u8], u64)>, Error> {
    let header = PageHeader::parse(page);
    let mut out = Vec::with_capacity(header.count as usize);
    for i in 0..header.count as usize {
        let at = PAGE_HEADER_SIZE + i * BRANCH_ELEMENT_SIZE;
        let el = element(page, at, BRANCH_ELEMENT_SIZE, id)?;
        let (pos, ksize, child) = (
            u32_at(el, 0) as usize,
            u32_at(el, 4) as usize,
            u64_at(el, 8),
        );
        // Positions are relative to the element itself.
        let key = element(page, at + pos, ksize, id)?;
        out.push((key, child));
    }
    Ok(out)
}

/// Calls `f` with each element of a leaf page (`id` is 0 for an inline page).
fn leaf_entries<'a>(
    page: &'a [u8],
    id: u64,
    f: &mut impl FnMut(&'a [u8], Value<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    if page.len() < PAGE_HEADER_SIZE {
        return Err(Error::Truncated { id });
    }
    let header = PageHeader::parse(page);
    if header.flags & LEAF_PAGE == 0 {
        return Err(Error::PageType {
            id,
            found: header.type_name(),
        });
    }
    for i in 0..header.count as usize {
        let at = PAGE_HEADER_SIZE + i * LEAF_ELEMENT_SIZE;
        let el = element(page, at, LEAF_ELEMENT_SIZE, id)?;
        let (flags, pos) = (u32_at(el, 0), u32_at(el, 4) as usize);
        let (ksize, vsize) = (u32_at(el, 8) as usize, u32_at(el, 12) as usize);
        let key = element(page, at + pos, ksize, id)?;
        let value = element(page, at + pos + ksize, vsize, id)?;
        let value = if flags & BUCKET_LEAF_FLAG != 0 {
            let head = element(value, 0, BUCKET_HEADER_SIZE, id)?;
            let root = u64_at(head, 0);
            Value::Bucket(Bucket {
                root,
                sequence: u64_at(head, 8),
                inline: (root == 0).then(|| &value[BUCKET_HEADER_SIZE..]),
            })
        } else {
            Value::Plain(value)
        };
        f(key, value)?;
    }
    Ok(())
}
