//! bbolt 1.3's on-disk layout: page header, branch and leaf elements, bucket headers and the meta
//! page. All integers are little-endian (bbolt writes its structs in the host's byte order, and
//! every platform etcd ships on is little-endian).

/// `page{id u64, flags u16, count u16, overflow u32}`.
pub const PAGE_HEADER_SIZE: usize = 16;
/// `branchPageElement{pos u32, ksize u32, pgid u64}`.
pub const BRANCH_ELEMENT_SIZE: usize = 16;
/// `leafPageElement{flags u32, pos u32, ksize u32, vsize u32}`.
pub const LEAF_ELEMENT_SIZE: usize = 16;
/// `bucket{root u64, sequence u64}`, the value of a bucket entry (followed by the page of an
/// inline bucket).
pub const BUCKET_HEADER_SIZE: usize = 16;

pub const BRANCH_PAGE: u16 = 0x01;
pub const LEAF_PAGE: u16 = 0x02;
pub const META_PAGE: u16 = 0x04;
pub const FREELIST_PAGE: u16 = 0x10;

/// Leaf element flag: the value is a bucket header, not a plain value.
pub const BUCKET_LEAF_FLAG: u32 = 0x01;

pub const MAGIC: u32 = 0xED0C_DAED;
pub const VERSION: u32 = 2;
/// The page size we write (and bbolt's default on the platforms etcd runs on).
pub const DEFAULT_PAGE_SIZE: usize = 4096;
/// `meta.freelist` when the freelist is not persisted (bbolt's `NoFreelistSync`).
pub const NO_FREELIST: u64 = u64::MAX;
/// A freelist page whose `count` is this holds the real count in its first element.
pub const FREELIST_COUNT_OVERFLOW: u16 = 0xFFFF;

/// Offset of the meta struct's checksum; the checksum covers the bytes before it.
const META_CHECKSUM_OFFSET: usize = 56;
pub const META_SIZE: usize = 64;

pub fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

pub fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

pub fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// A page's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl PageHeader {
    pub fn parse(b: &[u8]) -> PageHeader {
        PageHeader {
            id: u64_at(b, 0),
            flags: u16_at(b, 8),
            count: u16_at(b, 10),
            overflow: u32_at(b, 12),
        }
    }

    pub fn write(&self, b: &mut [u8]) {
        put_u64(b, 0, self.id);
        put_u16(b, 8, self.flags);
        put_u16(b, 10, self.count);
        put_u32(b, 12, self.overflow);
    }

    /// bbolt's `page.typ()` names, used in its integrity-check messages.
    pub fn type_name(&self) -> String {
        if self.flags & BRANCH_PAGE != 0 {
            "branch".into()
        } else if self.flags & LEAF_PAGE != 0 {
            "leaf".into()
        } else if self.flags & META_PAGE != 0 {
            "meta".into()
        } else if self.flags & FREELIST_PAGE != 0 {
            "freelist".into()
        } else {
            format!("unknown<{:02x}>", self.flags)
        }
    }
}

/// The meta page's content (after the page header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub magic: u32,
    pub version: u32,
    pub page_size: u32,
    pub flags: u32,
    /// Root bucket: page of its tree and its sequence.
    pub root: u64,
    pub sequence: u64,
    pub freelist: u64,
    /// High-water mark: the first page id past the end of the data.
    pub pgid: u64,
    pub txid: u64,
    pub checksum: u64,
}

/// Why a meta page is not usable, in bbolt's words (which etcdctl prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaProblem {
    Invalid,
    VersionMismatch,
    Checksum,
}

impl Meta {
    /// `b` starts at the meta struct (page offset + header).
    pub fn parse(b: &[u8]) -> Meta {
        Meta {
            magic: u32_at(b, 0),
            version: u32_at(b, 4),
            page_size: u32_at(b, 8),
            flags: u32_at(b, 12),
            root: u64_at(b, 16),
            sequence: u64_at(b, 24),
            freelist: u64_at(b, 32),
            pgid: u64_at(b, 40),
            txid: u64_at(b, 48),
            checksum: u64_at(b, 56),
        }
    }

    fn encode_without_checksum(&self) -> [u8; META_SIZE] {
        let mut b = [0u8; META_SIZE];
        put_u32(&mut b, 0, self.magic);
        put_u32(&mut b, 4, self.version);
        put_u32(&mut b, 8, self.page_size);
        put_u32(&mut b, 12, self.flags);
        put_u64(&mut b, 16, self.root);
        put_u64(&mut b, 24, self.sequence);
        put_u64(&mut b, 32, self.freelist);
        put_u64(&mut b, 40, self.pgid);
        put_u64(&mut b, 48, self.txid);
        b
    }

    /// FNV-1a (64 bit) of the fields before the checksum, as bbolt computes it.
    pub fn sum64(&self) -> u64 {
        fnv1a64(&self.encode_without_checksum()[..META_CHECKSUM_OFFSET])
    }

    /// The meta with its checksum filled in, as bytes.
    pub fn encode(&self) -> [u8; META_SIZE] {
        let mut b = self.encode_without_checksum();
        put_u64(&mut b, META_CHECKSUM_OFFSET, self.sum64());
        b
    }

    /// bbolt's `meta.validate`: magic, then version, then checksum (a zero checksum is accepted,
    /// as bbolt does for files written before checksums existed).
    pub fn validate(&self) -> Result<(), MetaProblem> {
        if self.magic != MAGIC {
            Err(MetaProblem::Invalid)
        } else if self.version != VERSION {
            Err(MetaProblem::VersionMismatch)
        } else if self.checksum != 0 && self.checksum != self.sum64() {
            Err(MetaProblem::Checksum)
        } else {
            Ok(())
        }
    }
}

pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        // Published FNV-1a test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn meta_round_trips_and_detects_corruption() {
        let m = Meta {
            magic: MAGIC,
            version: VERSION,
            page_size: 4096,
            flags: 0,
            root: 3,
            sequence: 0,
            freelist: 2,
            pgid: 4,
            txid: 1,
            checksum: 0,
        };
        let mut bytes = m.encode();
        let back = Meta::parse(&bytes);
        assert_eq!(back.validate(), Ok(()));
        assert_eq!(back.checksum, m.sum64());
        bytes[40] ^= 1;
        assert_eq!(Meta::parse(&bytes).validate(), Err(MetaProblem::Checksum));
        bytes[0] ^= 1;
        assert_eq!(Meta::parse(&bytes).validate(), Err(MetaProblem::Invalid));
    }
}
