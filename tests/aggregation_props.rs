//! Property tests of the aggregation arithmetic through the public engine:
//! the same events split across 1..8 threads in any order give identical
//! totals, threshold counts and alerts; verbatim redeliveries never change a
//! total; the merchants' GMV always sums to the total exactly.

use gmv_core::config::{DedupConfig, EngineConfig, MoneyConfig, WindowConfig};
use gmv_core::output::Report;
use gmv_core::{Engine, Settings};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// One valid event: merchant index, amount in fen, mobile, second of the day.
type Spec = (u8, u64, bool, u32);

fn payload(txn: usize, (merchant, fen, mobile, second): Spec) -> Vec<u8> {
    let (h, m, s) = (second / 3600, second / 60 % 60, second % 60);
    format!(
        r#"{{"txn_id":"t{txn}","merchant_id":"m{merchant}","amount":"{}.{:02}","channel":"{}","settled_at":"2017-11-11T{h:02}:{m:02}:{s:02}.5+08:00"}}"#,
        fen / 100,
        fen % 100,
        if mobile { "mobile" } else { "pc" }
    )
    .into_bytes()
}

fn settings() -> Settings {
    let money = MoneyConfig {
        thresholds_cny: ["1000.00", "5000.00", "20000.00"]
            .map(String::from)
            .to_vec(),
        ..MoneyConfig::default()
    };
    Settings::from_config(
        &WindowConfig::default(),
        &money,
        &DedupConfig::default(),
        &EngineConfig::default(),
    )
    .expect("valid settings")
}

/// Processes `records` on `threads` threads, thread `i` taking records `i, i+threads, ...`.
fn process(records: &[Vec<u8>], threads: usize) -> Engine {
    let engine = Engine::new(settings());
    std::thread::scope(|scope| {
        for t in 0..threads {
            let engine = &engine;
            scope.spawn(move || {
                let mut worker = engine.worker();
                for record in records.iter().skip(t).step_by(threads) {
                    let _ = worker.process(record);
                }
            });
        }
    });
    engine
}

/// The order-independent part of a report.
fn essence(engine: &Engine) -> (Report, BTreeSet<(String, String)>) {
    let mut report = engine.report();
    let alerts = report
        .alerts
        .drain(..)
        .map(|a| (a.merchant_id, a.threshold_cny))
        .collect();
    report.latency_ms = Default::default();
    (report, alerts)
}

fn events() -> impl Strategy<Value = Vec<Spec>> {
    prop::collection::vec(
        (0u8..12, 1u64..200_000, any::<bool>(), 0u32..86_400),
        1..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_split_and_order_gives_identical_figures(
        specs in events(),
        threads in 1usize..=8,
        seed in any::<u64>(),
        redeliveries in prop::collection::vec(any::<prop::sample::Index>(), 0..50),
    ) {
        let records: Vec<Vec<u8>> = specs.iter().enumerate().map(|(i, &s)| payload(i, s)).collect();
        let baseline = essence(&process(&records, 1));

        // Shuffle deterministically and add verbatim redeliveries.
        let mut shuffled = records.clone();
        shuffled.extend(redeliveries.iter().map(|i| records[i.index(records.len())].clone()));
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let engine = process(&shuffled, threads);
        let (report, alerts) = essence(&engine);

        let f = &report.figures;
        prop_assert_eq!(&f.gmv_cny, &baseline.0.figures.gmv_cny);
        prop_assert_eq!(&f.mobile_gmv_cny, &baseline.0.figures.mobile_gmv_cny);
        prop_assert_eq!(f.transactions, baseline.0.figures.transactions);
        prop_assert_eq!(f.transactions, specs.len() as u64);
        prop_assert_eq!(&f.thresholds, &baseline.0.figures.thresholds);
        prop_assert_eq!(f.peak_tps, baseline.0.figures.peak_tps);
        prop_assert_eq!(&f.peak_second, &baseline.0.figures.peak_second);
        prop_assert_eq!(&report.merchant_list, &baseline.0.merchant_list);
        prop_assert_eq!(&report.series, &baseline.0.series);
        prop_assert_eq!(&alerts, &baseline.1);
        prop_assert_eq!(f.rejected.total(), redeliveries.len() as u64);
        prop_assert_eq!(f.accounting.consumed, f.accounting.counted + f.accounting.rejected);

        // Exact sums: merchants add up to the total, fen for fen.
        let fen = |s: &str| -> u64 { s.replace('.', "").parse().expect("fen") };
        let merchant_sum: u64 = report.merchant_list.iter().map(|m| fen(&m.gmv_cny)).sum();
        prop_assert_eq!(merchant_sum, fen(&f.gmv_cny));
        let expected: u64 = specs.iter().map(|s| s.1).sum();
        prop_assert_eq!(fen(&f.gmv_cny), expected);
        let mobile: u64 = specs.iter().filter(|s| s.2).map(|s| s.1).sum();
        prop_assert_eq!(fen(&f.mobile_gmv_cny), mobile);
    }
}
