//! `check perf`: etcdctl's write-load check — rate-limited puts of 256-byte keys and 1 KiB values
//! from many concurrent clients for 60 s, then PASS/FAIL on throughput (≥ 90% of the target),
//! slowest request (≤ 0.5 s) and standard deviation (≤ 0.1 s).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use rampart_proto::etcdserverpb as pb;
use tokio::sync::{mpsc, Mutex};

use super::client::Client;
use super::global::ConnSettings;
use super::kv::prefix_end;
use crate::exit::{CtlError, CtlResult, ExitCode};
use crate::gofmt::quote;

#[derive(Subcommand, Debug)]
pub enum CheckCmd {
    /// Check the performance of the etcd cluster
    Perf {
        /// The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
        #[arg(long, default_value = "s")]
        load: String,
        /// The prefix for writing the performance check's keys.
        #[arg(long, default_value = "/etcdctl-check-perf/")]
        prefix: String,
        /// Compact storage with last revision after test is finished.
        #[arg(long)]
        auto_compact: bool,
        /// Defragment storage after test is finished.
        #[arg(long)]
        auto_defrag: bool,
    },
}

/// etcdctl's workload models: writes/s target, concurrent clients, seconds.
fn model(load: &str) -> Option<(u64, usize, u64)> {
    Some(match load {
        "s" | "small" => (150, 50, 60),
        "m" | "medium" => (1000, 200, 60),
        "l" | "large" => (8000, 500, 60),
        "xl" | "xLarge" => (15000, 1000, 60),
        _ => return None,
    })
}

/// Connections to spread the clients over (HTTP/2 multiplexes the rest).
const CONNECTIONS: usize = 8;

pub async fn run(settings: &ConnSettings, cmd: &CheckCmd) -> CtlResult {
    let CheckCmd::Perf {
        load,
        prefix,
        auto_compact,
        auto_defrag,
    } = cmd;
    let (limit, clients, secs) = model(load).ok_or_else(|| {
        CtlError::new(ExitCode::BadFeature, format!("unknown load option {load}"))
    })?;
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS.min(clients) {
        conns.push(Client::connect(settings).await?);
    }
    let first = &conns[0];
    let existing = first
        .call(first.kv().range(pb::RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix.as_bytes()),
            limit: 1,
            ..Default::default()
        }))
        .await?;
    if !existing.kvs.is_empty() {
        return Err(CtlError::new(
            ExitCode::InvalidInput,
            format!(
                "prefix {} has keys. Delete with etcdctl del --prefix {prefix} first",
                quote(prefix.as_bytes())
            ),
        ));
    }
    let bar = indicatif::ProgressBar::new(secs);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:60} {pos}/{len} {percent}% {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (tx, rx) = mpsc::channel::<Vec<u8>>(clients);
    let rx = Arc::new(Mutex::new(rx));
    let (results_tx, mut results_rx) = mpsc::unbounded_channel::<(Duration, Option<String>)>();
    let started = Instant::now();
    let mut workers = Vec::new();
    for i in 0..clients {
        let client = conns[i % conns.len()].clone();
        let rx = rx.clone();
        let results = results_tx.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let key = { rx.lock().await.recv().await };
                let Some(key) = key else { break };
                let t = Instant::now();
                let r = client
                    .call(client.kv().put(pb::PutRequest {
                        key,
                        value: vec![0; 1024],
                        ..Default::default()
                    }))
                    .await;
                let _ = results.send((t.elapsed(), r.err().map(|e| e.message)));
            }
        }));
    }
    drop(results_tx);
    // The rate limiter: one put every 1/limit s, for the duration.
    let producer = {
        let prefix = prefix.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / limit));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let end = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < end {
                tick.tick().await;
                let mut key = prefix.clone().into_bytes();
                let mut rnd = [0u8; 256];
                let n: i64 = rand::random::<i64>() & i64::MAX;
                let v = ((n << 1) ^ (n >> 63)) as u64;
                let mut x = v;
                let mut i = 0;
                while x >= 0x80 {
                    rnd[i] = (x as u8) | 0x80;
                    x >>= 7;
                    i += 1;
                }
                rnd[i] = x as u8;
                key.extend_from_slice(&rnd);
                if tx.send(key).await.is_err() {
                    break;
                }
            }
        })
    };
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            for _ in 0..secs {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.inc(1);
            }
        })
    };
    let mut lats = Vec::new();
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    while let Some((lat, err)) = results_rx.recv().await {
        match err {
            Some(e) => *errors.entry(e).or_default() += 1,
            None => lats.push(lat.as_secs_f64()),
        }
    }
    let total = started.elapsed().as_secs_f64();
    let _ = producer.await;
    ticker.abort();
    bar.finish();
    for w in workers {
        let _ = w.await;
    }
    let deleted = first
        .call_within(
            Duration::from_secs(30),
            first.kv().delete_range(pb::DeleteRangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                ..Default::default()
            }),
        )
        .await?;
    if *auto_compact {
        let rev = deleted.header.as_ref().map(|h| h.revision).unwrap_or(0);
        first
            .call(first.kv().compact(pb::CompactionRequest {
                revision: rev,
                physical: true,
            }))
            .await?;
        println!("Compacted with revision {rev}");
    }
    if *auto_defrag {
        for ep in &settings.endpoints {
            let c = Client::connect_one(settings, ep).await?;
            c.call(c.maintenance().defragment(pb::DefragmentRequest {}))
                .await?;
            println!("Defragmented {ep:?}");
        }
    }
    let rps = lats.len() as f64 / total;
    let slowest = lats.iter().cloned().fold(0.0, f64::max);
    let mean = lats.iter().sum::<f64>() / lats.len().max(1) as f64;
    let stddev =
        (lats.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lats.len().max(1) as f64).sqrt();
    let mut ok = true;
    if !errors.is_empty() {
        println!("FAIL: too many errors");
        for (e, n) in &errors {
            println!("FAIL: ERROR({e}) -> {n}");
        }
        ok = false;
    }
    if rps / limit as f64 <= 0.9 {
        println!("FAIL: Throughput too low: {} writes/s", rps as i64 + 1);
        ok = false;
    } else {
        println!("PASS: Throughput is {} writes/s", rps as i64 + 1);
    }
    if slowest > 0.5 {
        println!("Slowest request took too long: {slowest:.6}s");
        ok = false;
    } else {
        println!("PASS: Slowest request took {slowest:.6}s");
    }
    if stddev > 0.1 {
        println!("Stddev too high: {stddev:.6}s");
        ok = false;
    } else {
        println!("PASS: Stddev is {stddev:.6}s");
    }
    if ok {
        println!("PASS");
        Ok(())
    } else {
        println!("FAIL");
        Err(CtlError::silent(ExitCode::Error))
    }
}
