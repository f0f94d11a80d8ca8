//! The linearizability checker of the KV history: Wing & Gong's search with Lowe's memoisation,
//! as porcupine (etcd's robustness suite) runs it. Every operation touches one key, and a history
//! is linearizable if and only if each key's sub-history is (linearizability is local), so each
//! key is searched alone. An operation whose outcome is unknown gets a completion time of
//! "never": it may be placed anywhere after its invocation, including after everything else,
//! which is the same as not having taken effect.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::history::{Operation, Outcome, Request, Response};

/// How many search steps one key may take before the checker gives up and says "undecided"
/// instead of running without bound (porcupine's timeout, counted in steps so it is repeatable).
pub const DEFAULT_MAX_STEPS_PER_KEY: u64 = 20_000_000;

/// The register model of one key: absent, or one of the values written to it (interned).
type State = Option<u32>;

/// What the checker decided for one key.
#[derive(Debug, Clone)]
pub enum KeyVerdict {
    Linearizable,
    NotLinearizable(NonLinearizable),
    /// The search hit its step bound before finding an order or exhausting all of them.
    Undecided {
        steps: u64,
    },
}

/// Why a key's history is not linearizable, in terms a person can follow: the longest order the
/// search found, and the operations none of which could come next.
#[derive(Debug, Clone)]
pub struct NonLinearizable {
    pub key: String,
    /// The key's operations, by invocation time.
    pub operations: Vec<Operation>,
    /// The longest prefix of a linear order the search could build (operation ids).
    pub longest_order: Vec<usize>,
    /// The operations that could have come next after that prefix, none of which fits.
    pub blocked: Vec<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct LinearizabilityReport {
    /// Per key, in key order.
    pub verdicts: BTreeMap<String, KeyVerdict>,
}

impl LinearizabilityReport {
    pub fn anomalies(&self) -> Vec<&NonLinearizable> {
        self.verdicts
            .values()
            .filter_map(|v| match v {
                KeyVerdict::NotLinearizable(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    pub fn undecided_keys(&self) -> Vec<&str> {
        self.verdicts
            .iter()
            .filter(|(_, v)| matches!(v, KeyVerdict::Undecided { .. }))
            .map(|(k, _)| k.as_str())
            .collect()
    }

    pub fn is_linearizable(&self) -> bool {
        self.verdicts
            .values()
            .all(|v| matches!(v, KeyVerdict::Linearizable))
    }
}

/// Checks every key of `operations`, each bounded by `max_steps_per_key`.
pub fn check_linearizability(
    operations: &[Operation],
    max_steps_per_key: u64,
) -> LinearizabilityReport {
    let mut per_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in operations {
        // A read that failed says nothing and changes nothing.
        if op.is_unknown() && !op.request.is_write() {
            continue;
        }
        per_key.entry(op.key.as_str()).or_default().push(op);
    }
    let verdicts = per_key
        .into_iter()
        .map(|(key, ops)| (key.to_string(), check_key(key, &ops, max_steps_per_key)))
        .collect();
    LinearizabilityReport { verdicts }
}

/// One end of an operation in the time-ordered list the search walks.
#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    /// The index of the other end of the same operation.
    partner: usize,
}

const NIL: usize = usize::MAX;

/// The doubly linked list of entries; operations are lifted out when linearized and put back
/// when the search backtracks. Index `head` is a sentinel before the first entry.
struct EntryList {
    entries: Vec<Entry>,
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
}

impl EntryList {
    fn new(entries: Vec<Entry>) -> EntryList {
        let n = entries.len();
        let head = n;
        let mut next: Vec<usize> = (1..=n).collect();
        next[n - 1] = NIL;
        next.push(if n > 0 { 0 } else { NIL });
        let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { head } else { i - 1 }).collect();
        prev.push(NIL);
        EntryList {
            entries,
            next,
            prev,
            head,
        }
    }

    fn first(&self) -> usize {
        self.next[self.head]
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        if n != NIL {
            self.prev[n] = i;
        }
    }

    /// Removes a call entry and its return entry.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.entries[call].partner);
    }

    /// Undoes `lift` (in reverse order, so the saved neighbours are valid again).
    fn unlift(&mut self, call: usize) {
        self.relink(self.entries[call].partner);
        self.relink(call);
    }
}

/// The model's step: the state after `op`, or `None` if `op` cannot have returned what it did
/// from `state`.
fn step(state: State, op: &Operation, intern: &HashMap<&str, u32>) -> Option<State> {
    let value_id = |v: &str| intern.get(v).copied();
    match (&op.request, &op.outcome) {
        (Request::Put { value }, _) => Some(value_id(value)),
        (Request::Get, Outcome::Ok(Response::Get { value, .. })) => {
            let read = value.as_deref().map(|v| value_id(v).unwrap_or(u32::MAX));
            (read == state).then_some(state)
        }
        (Request::Delete, Outcome::Ok(Response::Delete { deleted, .. })) => {
            (*deleted == state.is_some()).then_some(None)
        }
        (Request::Delete, Outcome::Unknown { .. }) => Some(None),
        (Request::CompareAndSet { expected, value }, outcome) => {
            let matches = state.is_some() && state == value_id(expected);
            let after = if matches { value_id(value) } else { state };
            match outcome {
                Outcome::Ok(Response::CompareAndSet { succeeded, .. }) => {
                    (*succeeded == matches).then_some(after)
                }
                Outcome::Unknown { .. } => Some(after),
                Outcome::Ok(_) => None,
            }
        }
        // A response of the wrong kind (or a failed read, filtered out earlier) fits nothing.
        _ => None,
    }
}

fn check_key(key: &str, ops: &[&Operation], max_steps: u64) -> KeyVerdict {
    if ops.is_empty() {
        return KeyVerdict::Linearizable;
    }
    let mut intern: HashMap<&str, u32> = HashMap::new();
    for op in ops {
        if let Some(v) = op.request.written_value() {
            let next = intern.len() as u32;
            intern.entry(v).or_insert(next);
        }
    }
    // (time, is_return, op): calls sort before returns at equal times, which only makes more
    // operations concurrent (never a false alarm). Unknown outcomes never return.
    let mut ends: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        ends.push((op.invoked, false, i));
        let returned = if op.is_unknown() {
            u64::MAX
        } else {
            op.completed.max(op.invoked)
        };
        ends.push((returned, true, i));
    }
    ends.sort();
    let mut call_at = vec![0; ops.len()];
    let mut return_at = vec![0; ops.len()];
    for (i, &(_, is_return, op)) in ends.iter().enumerate() {
        if is_return {
            return_at[op] = i;
        } else {
            call_at[op] = i;
        }
    }
    let entries: Vec<Entry> = ends
        .iter()
        .map(|&(_, is_return, op)| Entry {
            op,
            is_call: !is_return,
            partner: if is_return {
                call_at[op]
            } else {
                return_at[op]
            },
        })
        .collect();
    let mut list = EntryList::new(entries);

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    // The calls linearized so far, with the state before each.
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state: State = None;
    let mut longest: (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    let mut cursor = list.first();
    let mut steps: u64 = 0;

    while cursor != NIL {
        steps += 1;
        if steps > max_steps {
            return KeyVerdict::Undecided { steps };
        }
        let entry = list.entries[cursor];
        if entry.is_call {
            let op = entry.op;
            if let Some(after) = step(state, ops[op], &intern) {
                let mut with_op = linearized.clone();
                with_op[op / 64] |= 1 << (op % 64);
                if seen.insert((with_op.clone(), after)) {
                    stack.push((cursor, state));
                    state = after;
                    linearized = with_op;
                    list.lift(cursor);
                    cursor = list.first();
                    continue;
                }
            }
            cursor = list.next[cursor];
        } else {
            // A return reached: its operation must already be linearized; it is not, so undo.
            if stack.len() >= longest.0.len() {
                longest = (
                    stack
                        .iter()
                        .map(|&(c, _)| ops[list.entries[c].op].id)
                        .collect(),
                    next_candidates(&list, ops),
                );
            }
            let Some((call, before)) = stack.pop() else {
                let (longest_order, blocked) = longest;
                let mut operations: Vec<Operation> = ops.iter().map(|o| (*o).clone()).collect();
                operations.sort_by_key(|o| (o.invoked, o.id));
                return KeyVerdict::NotLinearizable(NonLinearizable {
                    key: key.to_string(),
                    operations,
                    longest_order,
                    blocked,
                });
            };
            let op = list.entries[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            state = before;
            list.unlift(call);
            cursor = list.next[call];
        }
    }
    KeyVerdict::Linearizable
}

/// The operations whose calls come before the first pending return: the ones that could be
/// linearized next.
fn next_candidates(list: &EntryList, ops: &[&Operation]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = list.first();
    while i != NIL {
        let e = list.entries[i];
        if !e.is_call {
            // Its call is already in `out`: calls come before their returns.
            break;
        }
        out.push(ops[e.op].id);
        i = list.next[i];
    }
    out
}

/// Operations listed around the point where the search got stuck (the saved history has all).
const SHOWN_AROUND_FAILURE: usize = 40;

impl fmt::Display for NonLinearizable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by_id: HashMap<usize, &Operation> = self.operations.iter().map(|o| (o.id, o)).collect();
        let tail = &self.longest_order[self.longest_order.len().saturating_sub(8)..];
        // The window from the last few linearized operations to the blocked ones.
        let from = tail
            .iter()
            .chain(&self.blocked)
            .map(|id| by_id[id].invoked)
            .min()
            .unwrap_or(0);
        let to = self
            .blocked
            .iter()
            .map(|id| by_id[id].completed)
            .max()
            .unwrap_or(u64::MAX);
        let around: Vec<&Operation> = self
            .operations
            .iter()
            .filter(|o| o.completed >= from && o.invoked <= to)
            .take(SHOWN_AROUND_FAILURE)
            .collect();
        writeln!(
            f,
            "key {:?} is not linearizable ({} operations; {} around the failure, by invocation):",
            self.key,
            self.operations.len(),
            around.len()
        )?;
        for op in around {
            writeln!(f, "  {op}")?;
        }
        writeln!(
            f,
            "the longest valid order found ({} operations) ends with:",
            self.longest_order.len()
        )?;
        for id in tail {
            writeln!(f, "  {}", by_id[id])?;
        }
        writeln!(f, "after which none of these can come next:")?;
        for id in &self.blocked {
            writeln!(f, "  {}", by_id[id])?;
        }
        Ok(())
    }
}
