//! Property tests of the aggregation arithmetic through the public engine:
//! the same events split across 1..8 partitions (by merchant) in any order
//! give identical totals, threshold counts and alerts; verbatim redeliveries
//! never change a total; the merchants' GMV always sums to the total
//! exactly.

use gmv_core::config::{DedupConfig, EngineConfig, MoneyConfig, WindowConfig};
use gmv_core::output::Report;
use gmv_core::partition::{decode, partition_of, Decoded, Partition};
use gmv_core::view::{LiveView, PartitionKey};
use gmv_core::Settings;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::Arc;

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

/// Processes `records` in `partitions` partitions split by merchant, and
/// returns the report of their view.
fn process(records: &[Vec<u8>], partitions: u32) -> Report {
    let settings = Arc::new(settings());
    let mut parts: Vec<Partition> = (0..partitions)
        .map(|_| Partition::new(settings.clone(), 1 << 20))
        .collect();
    for (i, record) in records.iter().enumerate() {
        let decoded = decode(&settings, record);
        let p = decoded
            .as_ref()
            .map_or(0, |d| partition_of(d.merchant_hash, partitions));
        let txn = decoded.as_ref().map(Decoded::txn).map_err(Clone::clone);
        let _ = parts[p as usize].count(i as i64, txn);
    }
    let mut view = LiveView::new(settings);
    for (p, part) in parts.iter_mut().enumerate() {
        view.apply(&PartitionKey::split(p as u32), "test", &part.take_delta());
    }
    view.report()
}

/// The order-independent part of a report.
fn essence(mut report: Report) -> (Report, BTreeSet<(String, String)>) {
    let alerts = report
        .alerts
        .drain(..)
        .map(|a| (a.merchant_id, a.threshold_cny))
        .collect();
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
        partitions in 1u32..=8,
        seed in any::<u64>(),
        redeliveries in prop::collection::vec(any::<prop::sample::Index>(), 0..50),
    ) {
        let records: Vec<Vec<u8>> = specs.iter().enumerate().map(|(i, &s)| payload(i, s)).collect();
        let baseline = essence(process(&records, 1));

        // Shuffle deterministically and add verbatim redeliveries.
        let mut shuffled = records.clone();
        shuffled.extend(redeliveries.iter().map(|i| records[i.index(records.len())].clone()));
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let (report, alerts) = essence(process(&shuffled, partitions));

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
