//! `-w table`: the boxed tables etcdctl draws with tablewriter (headers upper-case and
//! centred, cells right-aligned), and the rows its simple format shares.

use rampart_proto::etcdserverpb as pb;

use super::{EpHashKv, EpHealth, EpStatus};
use crate::gofmt::humanize_bytes;

fn width(s: &str) -> usize {
    s.chars().count()
}

/// Columns of the terminal on standard output; `None` when it is not a terminal.
fn terminal_columns() -> Option<usize> {
    // SAFETY: TIOCGWINSZ only writes the winsize struct we pass.
    unsafe {
        if libc::isatty(1) != 1 {
            return None;
        }
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            Some(ws.ws_col as usize)
        } else {
            None
        }
    }
}

/// Renders a table as tablewriter does with `ALIGN_RIGHT`; on a terminal too narrow for it,
/// comma-separated cells (URL lists) are broken over several lines so the table fits.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let plain = render_lines(header, rows);
    let Some(cols) = terminal_columns() else {
        return plain;
    };
    if plain.lines().next().map(width).unwrap_or(0) <= cols {
        return plain;
    }
    let wrapped: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| c.replace(',', ",\n")).collect())
        .collect();
    render_lines(header, &wrapped)
}

/// The table; a cell may hold several lines.
fn render_lines(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                for line in cell.split('\n') {
                    widths[i] = widths[i].max(width(line));
                }
            }
        }
    }
    let rule: String = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = String::new();
    out.push_str(&rule);
    out.push('|');
    for (h, w) in header.iter().zip(&widths) {
        let gap = w - width(h);
        let left = gap / 2;
        out.push_str(&format!(
            " {}{}{} |",
            " ".repeat(left),
            h,
            " ".repeat(gap - left)
        ));
    }
    out.push('\n');
    out.push_str(&rule);
    for row in rows {
        let height = row.iter().map(|c| c.split('\n').count()).max().unwrap_or(1);
        for n in 0..height {
            out.push('|');
            for (cell, w) in row.iter().zip(&widths) {
                let line = cell.split('\n').nth(n).unwrap_or("");
                out.push_str(&format!(" {}{} |", " ".repeat(w - width(line)), line));
            }
            out.push('\n');
        }
    }
    out.push_str(&rule);
    out
}

pub fn member_rows(r: &pb::MemberListResponse) -> Vec<Vec<String>> {
    r.members
        .iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                }
                .to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

pub fn member_list(r: &pb::MemberListResponse) -> String {
    render(
        &[
            "ID",
            "Status",
            "Name",
            "Peer Addrs",
            "Client Addrs",
            "Is Learner",
        ],
        &member_rows(r),
    )
}

pub fn endpoint_health(list: &[EpHealth]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|h| {
            vec![
                h.ep.clone(),
                h.health.to_string(),
                h.took.clone(),
                h.error.clone(),
            ]
        })
        .collect();
    render(&["endpoint", "health", "took", "error"], &rows)
}

pub fn status_rows(list: &[EpStatus]) -> Vec<Vec<String>> {
    list.iter()
        .map(|s| {
            let r = &s.resp;
            let member = r.header.as_ref().map(|h| h.member_id).unwrap_or(0);
            vec![
                s.ep.clone(),
                format!("{member:x}"),
                r.version.clone(),
                humanize_bytes(r.db_size.max(0) as u64),
                (r.leader == member).to_string(),
                r.is_learner.to_string(),
                r.raft_term.to_string(),
                r.raft_index.to_string(),
                r.raft_applied_index.to_string(),
                r.errors.join(", "),
            ]
        })
        .collect()
}

pub fn endpoint_status(list: &[EpStatus]) -> String {
    render(
        &[
            "endpoint",
            "ID",
            "version",
            "db size",
            "is leader",
            "is learner",
            "raft term",
            "raft index",
            "raft applied index",
            "errors",
        ],
        &status_rows(list),
    )
}

pub fn endpoint_hashkv(list: &[EpHashKv]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|h| vec![h.ep.clone(), h.resp.hash.to_string()])
        .collect();
    render(&["endpoint", "hash"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_as_tablewriter() {
        let t = render(
            &["endpoint", "hash"],
            &[vec!["127.0.0.1:2379".into(), "12".into()]],
        );
        assert_eq!(
            t,
            "+----------------+------+\n\
             |    ENDPOINT    | HASH |\n\
             +----------------+------+\n\
             | 127.0.0.1:2379 |   12 |\n\
             +----------------+------+\n"
        );
    }

    #[test]
    fn wrapped_cells_span_lines() {
        let t = render_lines(&["a"], &[vec!["x,\nyy".into()]]);
        assert_eq!(t, "+----+\n| A  |\n+----+\n| x, |\n| yy |\n+----+\n");
    }
}
