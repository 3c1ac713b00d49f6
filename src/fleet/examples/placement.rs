//! Placement at fleet scale: 10,000 tenants placed one after another over 1,000 simulated
//! cells of one region (so every placement weighs all of them), each placement reserving the
//! tenant's size on its cell. Prints the time it took and how evenly the cells ended up
//! loaded, for power of two choices and, in the same run, for a random eligible cell and for
//! always the least loaded one.
//!
//!     cargo run --release -p kora-fleet --example placement [-- TENANTS CELLS SEED]

use std::time::Instant;

use kora_common::{Entropy, SeededEntropy};
use kora_fleet::model::{Capacity, CellObservation, CellSpec};
use kora_fleet::placement::{place, CellLoad, PlacementRequest};

const MB: u64 = 1_000_000;

fn draw(e: &dyn Entropy, lo: u64, hi: u64) -> u64 {
    let mut b = [0u8; 8];
    e.fill(&mut b);
    lo + u64::from_le_bytes(b) % (hi - lo + 1)
}

#[derive(Clone, Copy)]
enum Rule {
    PowerOfTwo,
    Random,
    LeastLoaded,
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let tenants = args.first().copied().unwrap_or(10_000) as usize;
    let cells = args.get(1).copied().unwrap_or(1_000) as usize;
    let seed = args.get(2).copied().unwrap_or(1);
    let setup = SeededEntropy::new(seed);
    let specs: Vec<CellSpec> = (0..cells)
        .map(|i| CellSpec {
            id: format!("cell-{i:04}"),
            region: "r1".into(),
            zones: vec!["r1a".into(), "r1b".into(), "r1c".into()],
            version: "0.1.0".into(),
            capacity: Capacity {
                ingress_bytes_per_second: draw(&setup, 200, 400) * MB,
                egress_bytes_per_second: draw(&setup, 600, 1200) * MB,
                partitions: draw(&setup, 3_000, 6_000),
                storage_bytes: 1_000_000 * MB,
            },
            admin: format!("http://cell-{i}"),
            bootstrap: format!("cell-{i}:9092"),
            cordoned: i % 97 == 0,
        })
        .collect();
    let observed: Vec<CellObservation> = (0..cells)
        .map(|i| CellObservation {
            at_ms: 1_000,
            healthy: i % 89 != 0,
            broker_load: draw(&setup, 0, 30) as f64 / 100.0,
            used: Capacity::default(),
        })
        .collect();
    let sizes: Vec<Capacity> = (0..tenants)
        .map(|_| {
            let mb = draw(&setup, 1, 20);
            Capacity {
                ingress_bytes_per_second: mb * MB,
                egress_bytes_per_second: 3 * mb * MB,
                partitions: draw(&setup, 10, 200),
                storage_bytes: 100 * MB,
            }
        })
        .collect();
    println!("| rule | tenants | cells | placed | refused | total ms | µs per placement | max cell load | mean | p99 |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, rule) in [
        ("power of two choices", Rule::PowerOfTwo),
        ("random eligible", Rule::Random),
        ("least loaded", Rule::LeastLoaded),
    ] {
        let entropy = SeededEntropy::new(seed + 1);
        let mut reserved = vec![Capacity::default(); cells];
        let index: std::collections::HashMap<&str, usize> =
            specs.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
        let (mut placed, mut refused) = (0, 0);
        let started = Instant::now();
        for size in &sizes {
            let req = PlacementRequest {
                region: "r1".into(),
                size: *size,
                min_zones: 3,
                now_ms: 2_000,
                report_max_age_ms: 30_000,
            };
            let loads: Vec<CellLoad> = specs
                .iter()
                .zip(&observed)
                .zip(&reserved)
                .map(|((spec, o), r)| CellLoad { spec, observed: Some(o), reserved: *r })
                .collect();
            let chosen = match rule {
                Rule::PowerOfTwo => place(&req, &loads, &entropy).ok().map(|id| index[id.as_str()]),
                Rule::Random | Rule::LeastLoaded => {
                    let eligible: Vec<(f64, usize)> = loads
                        .iter()
                        .enumerate()
                        .filter_map(|(i, l)| l.load_after(&req).map(|x| (x, i)))
                        .collect();
                    match rule {
                        _ if eligible.is_empty() => None,
                        Rule::Random => {
                            Some(eligible[draw(&entropy, 0, eligible.len() as u64 - 1) as usize].1)
                        }
                        _ => eligible.iter().min_by(|a, b| a.0.total_cmp(&b.0)).map(|x| x.1),
                    }
                }
            };
            match chosen {
                Some(i) => {
                    reserved[i] = reserved[i].plus(size);
                    placed += 1;
                }
                None => refused += 1,
            }
        }
        let elapsed = started.elapsed();
        // Each usable cell's load now (what a tiny tenant would see).
        let probe = PlacementRequest {
            region: "r1".into(),
            size: Capacity::default(),
            min_zones: 1,
            now_ms: 2_000,
            report_max_age_ms: 30_000,
        };
        let mut final_loads: Vec<f64> = specs
            .iter()
            .zip(&observed)
            .zip(&reserved)
            .filter_map(|((spec, o), r)| {
                CellLoad { spec, observed: Some(o), reserved: *r }.load_after(&probe)
            })
            .collect();
        final_loads.sort_by(f64::total_cmp);
        let max = final_loads.last().copied().unwrap_or(0.0);
        let mean = final_loads.iter().sum::<f64>() / final_loads.len().max(1) as f64;
        let p99 = final_loads.get(final_loads.len() * 99 / 100).copied().unwrap_or(0.0);
        println!(
            "| {name} | {tenants} | {cells} | {placed} | {refused} | {:.0} | {:.1} | {max:.3} | {mean:.3} | {p99:.3} |",
            elapsed.as_secs_f64() * 1000.0,
            elapsed.as_secs_f64() * 1e6 / tenants as f64
        );
    }
}
