//! Key permissions as etcd checks them: a role's permission covers one key (no range end), the
//! keys in `[key, range_end)`, or every key from `key` on (range end `"\0"`). A request on a
//! range is allowed when the union of the user's permissions of that type covers the whole
//! range; a request on one key, when some permission contains the key.

use rampart_proto::authpb::{permission::Type as PermType, Permission};

/// A half-open key interval; `end: None` reaches past every key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interval {
    begin: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    /// What a permission (or a request) names: one key when `range_end` is empty, every key
    /// from `key` on when it is `"\0"`.
    fn of(key: &[u8], range_end: &[u8]) -> Interval {
        let end = match range_end {
            [] => {
                let mut next = key.to_vec();
                next.push(0);
                Some(next)
            }
            [0] => None,
            end => Some(end.to_vec()),
        };
        Interval {
            begin: key.to_vec(),
            end,
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.begin.as_slice() <= key && self.end.as_ref().is_none_or(|end| end.as_slice() > key)
    }

    fn is_empty(&self) -> bool {
        matches!(&self.end, Some(end) if *end <= self.begin)
    }
}

/// One user's permissions of one type (READ or WRITE; READWRITE counts as both).
#[derive(Debug, Default, Clone)]
pub struct PermissionSet {
    intervals: Vec<Interval>,
}

impl PermissionSet {
    /// The permissions of type `wanted` among `perms`.
    pub fn of<'a>(perms: impl IntoIterator<Item = &'a Permission>, wanted: PermType) -> Self {
        let mut intervals: Vec<Interval> = perms
            .into_iter()
            .filter(|p| {
                let t = PermType::try_from(p.perm_type).unwrap_or(PermType::Read);
                t == wanted || t == PermType::Readwrite
            })
            .map(|p| Interval::of(&p.key, &p.range_end))
            .filter(|i| !i.is_empty())
            .collect();
        intervals.sort_by(|a, b| a.begin.cmp(&b.begin));
        PermissionSet { intervals }
    }

    /// Whether a request on `key` (one key when `range_end` is empty) is covered.
    pub fn allows(&self, key: &[u8], range_end: &[u8]) -> bool {
        if range_end.is_empty() {
            return self.intervals.iter().any(|i| i.contains(key));
        }
        let wanted = Interval::of(key, range_end);
        if wanted.is_empty() {
            // etcd's interval tree finds no cover for an empty or inverted range either.
            return false;
        }
        // Walk the permissions in key order, extending the covered prefix of `wanted`.
        let mut covered_to: Vec<u8> = wanted.begin.clone();
        for i in &self.intervals {
            if i.begin > covered_to {
                break;
            }
            match &i.end {
                None => return true,
                Some(end) if *end > covered_to => covered_to = end.clone(),
                Some(_) => {}
            }
            if let Some(wanted_end) = &wanted.end {
                if covered_to >= *wanted_end {
                    return true;
                }
            }
        }
        match &wanted.end {
            Some(wanted_end) => covered_to >= *wanted_end,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(key: &str, end: &str, t: PermType) -> Permission {
        Permission {
            perm_type: t as i32,
            key: key.as_bytes().to_vec(),
            range_end: end.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_single_key_permission_allows_that_key_only() {
        let set = PermissionSet::of(&[perm("foo", "", PermType::Read)], PermType::Read);
        assert!(set.allows(b"foo", b""));
        assert!(!set.allows(b"foo1", b""));
        assert!(!set.allows(b"fo", b""));
        // The range holding just "foo".
        assert!(set.allows(b"foo", b"foo\0"));
        assert!(!set.allows(b"foo", b"fop"));
    }

    #[test]
    fn a_prefix_permission_covers_ranges_inside_it() {
        let set = PermissionSet::of(&[perm("foo", "fop", PermType::Readwrite)], PermType::Write);
        assert!(set.allows(b"foo", b""));
        assert!(set.allows(b"foo/bar", b""));
        assert!(set.allows(b"foo", b"fop"));
        assert!(set.allows(b"foo/a", b"foo/b"));
        assert!(!set.allows(b"foo", b"foq"));
        assert!(!set.allows(b"fo", b"fop"));
        assert!(!set.allows(b"fop", b""));
    }

    #[test]
    fn adjacent_and_overlapping_permissions_are_merged() {
        let perms = [
            perm("a", "c", PermType::Read),
            perm("c", "e", PermType::Read),
            perm("d", "g", PermType::Read),
        ];
        let set = PermissionSet::of(&perms, PermType::Read);
        assert!(set.allows(b"a", b"g"));
        assert!(set.allows(b"b", b"f"));
        assert!(!set.allows(b"a", b"h"));
        // A write permission is not a read permission.
        let set = PermissionSet::of(&perms, PermType::Write);
        assert!(!set.allows(b"a", b""));
    }

    #[test]
    fn from_key_permissions_reach_past_every_key() {
        let set = PermissionSet::of(&[perm("k", "\0", PermType::Read)], PermType::Read);
        assert!(set.allows(b"k", b"\0"));
        assert!(set.allows(b"z", b"\0"));
        assert!(set.allows(b"zzz", b""));
        assert!(!set.allows(b"a", b"\0"));
        assert!(!set.allows(b"j", b""));
        let bounded = PermissionSet::of(&[perm("k", "z", PermType::Read)], PermType::Read);
        assert!(!bounded.allows(b"k", b"\0"));
    }

    #[test]
    fn an_empty_set_allows_nothing() {
        let set = PermissionSet::default();
        assert!(!set.allows(b"a", b""));
        assert!(!set.allows(b"a", b"b"));
        assert!(!set.allows(b"", b"\0"));
    }
}
