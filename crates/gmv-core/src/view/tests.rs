use super::*;
use crate::partition::{decode, partition_of, Decoded, Partition};
use proptest::prelude::*;

fn event(txn: usize, merchant: usize, fen: u64, mobile: bool, second: u32) -> String {
    format!(
        r#"{{"txn_id":"t{txn}","merchant_id":"m{merchant}","amount":"{}.{:02}","channel":"{}","settled_at":"2017-11-11T{:02}:{:02}:{:02}+08:00"}}"#,
        fen / 100,
        fen % 100,
        if mobile { "mobile" } else { "pc" },
        second / 3600,
        second / 60 % 60,
        second % 60
    )
}

fn settings() -> Arc<Settings> {
    let mut s = Settings::defaults();
    s.thresholds = vec![5_000, 20_000, 60_000];
    s.top_n = 5;
    Arc::new(s)
}

/// Runs `records` through `partitions` partitions (split by merchant, in
/// input order within each), handing deltas to one view every `every`
/// records of a partition; returns the final report.
fn report_over(records: &[String], partitions: u32, every: usize) -> Report {
    let settings = settings();
    let mut parts: Vec<Partition> = (0..partitions)
        .map(|_| Partition::new(settings.clone(), 1 << 12))
        .collect();
    let mut view = LiveView::new(settings.clone());
    let mut since = vec![0; partitions as usize];
    for (i, record) in records.iter().enumerate() {
        let decoded = decode(&settings, record.as_bytes());
        let p = match &decoded {
            Ok(d) => partition_of(d.merchant_hash, partitions),
            Err(_) => i as u32 % partitions,
        } as usize;
        let txn = decoded.as_ref().map(Decoded::txn).map_err(Clone::clone);
        let _ = parts[p].count(i as i64, txn);
        since[p] += 1;
        if since[p] == every {
            since[p] = 0;
            let delta = parts[p].take_delta();
            view.apply(&PartitionKey::split(p as u32), "t", &delta);
        }
    }
    for (p, part) in parts.iter_mut().enumerate() {
        let delta = part.take_delta();
        view.apply(&PartitionKey::split(p as u32), "t", &delta);
    }
    view.report()
}

fn records() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        (
            0usize..60,
            0usize..9,
            1u64..30_000,
            any::<bool>(),
            0u32..200,
        ),
        1..150,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .map(|(txn, merchant, fen, mobile, second)| event(txn, merchant, fen, mobile, second))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// However a stream is split into partitions and however often they hand
    /// over, the report is the same to the byte.
    #[test]
    fn the_report_does_not_depend_on_partitions_or_hand_over_points(
        records in records(),
        partitions in 1u32..9,
        every in 1usize..20,
    ) {
        let one = serde_json::to_string(&report_over(&records, 1, usize::MAX)).unwrap();
        let split = serde_json::to_string(&report_over(&records, partitions, every)).unwrap();
        prop_assert_eq!(one, split);
    }
}

#[test]
fn the_live_snapshot_sums_partitions_and_finds_the_global_peak() {
    let settings = settings();
    let mut view = LiveView::new(settings.clone());
    // Partition 0 peaks at second 1 (2 events), partition 1 at second 2
    // (2 events); summed, second 2 has 3.
    for (p, events) in [
        (0u32, vec![(0, 1, 100, 1), (1, 1, 100, 1), (2, 1, 100, 2)]),
        (1, vec![(3, 2, 250, 2), (4, 2, 250, 2)]),
    ] {
        let mut part = Partition::new(settings.clone(), 1 << 12);
        for (i, (txn, merchant, fen, second)) in events.into_iter().enumerate() {
            let record = event(txn, merchant, fen, true, second);
            let d = decode(&settings, record.as_bytes()).unwrap();
            part.count(i as i64, Ok(d.txn())).unwrap();
        }
        view.apply(&PartitionKey::split(p), "t", &part.take_delta());
    }
    let s = view.snapshot(1, 500, LatencyMs::default());
    assert_eq!(s.figures.gmv_cny, "8.00");
    assert_eq!(s.figures.transactions, 5);
    assert_eq!(s.figures.merchants, 2);
    assert_eq!(s.figures.peak_tps, 3);
    assert_eq!(
        s.figures.peak_second.as_deref(),
        Some("2017-11-11T00:00:02+08:00")
    );
    assert_eq!(s.figures.top_merchants[0].merchant_id, "m2");
    assert_eq!(s.recent_minutes.len(), 1);
    // A member that no longer reports the partition cannot take it away.
    view.remove(&PartitionKey::split(1), "someone else");
    assert_eq!(
        view.snapshot(2, 500, LatencyMs::default()).figures.gmv_cny,
        "8.00"
    );
    view.remove(&PartitionKey::split(1), "t");
    let s = view.snapshot(2, 500, LatencyMs::default());
    assert_eq!(s.figures.gmv_cny, "3.00");
    assert_eq!(s.figures.peak_tps, 2);
    assert!(view.index().get("m2").is_none());
}

#[test]
fn a_crossing_re_reported_after_a_restore_is_handed_on_once() {
    let settings = settings();
    let mut view = LiveView::new(settings.clone());
    let mut part = Partition::new(settings.clone(), 1 << 12);
    let record = event(1, 1, 6_000, true, 5);
    part.count(0, Ok(decode(&settings, record.as_bytes()).unwrap().txn()))
        .unwrap();
    let key = PartitionKey::kafka("t", 0);
    assert_eq!(view.apply(&key, "a", &part.take_delta()).crossings.len(), 1);
    let chain = [part.checkpoint(1, None)];
    let mut restored = Partition::restore(settings.clone(), 1 << 12, &chain).unwrap();
    let again = restored.take_delta();
    assert_eq!(again.crossings.len(), 1);
    assert!(view.apply(&key, "b", &again).crossings.is_empty());
}

#[test]
fn a_partition_moved_between_members_keeps_its_new_owners_figures_whatever_comes_late() {
    let settings = settings();
    let count = |part: &mut Partition, at: i64, txn, merchant, second| {
        let record = event(txn, merchant, 100, true, second);
        part.count(at, Ok(decode(&settings, record.as_bytes()).unwrap().txn()))
            .unwrap();
    };
    let key = PartitionKey::kafka("t", 0);
    let mut view = LiveView::new(settings.clone());
    // The first owner counts m1 twice in second 1, checkpoints, then m2.
    let mut first = Partition::new(settings.clone(), 1 << 12);
    count(&mut first, 0, 1, 1, 1);
    count(&mut first, 1, 2, 1, 1);
    view.apply_from(&key, "a", 1, &first.take_delta());
    let chain = [first.checkpoint(1, None)];
    count(&mut first, 2, 3, 2, 2);
    let late = first.take_delta();
    // The partition moves: its next owner restores the checkpoint (the m2
    // record is its to count again, or not) and counts m3.
    let mut next = Partition::restore(settings.clone(), 1 << 12, &chain).unwrap();
    view.apply_from(&key, "b", 2, &next.take_delta());
    count(&mut next, 2, 4, 3, 3);
    view.apply_from(&key, "b", 2, &next.take_delta());
    // The first owner's last delta and its close arrive after.
    assert!(view.apply_from(&key, "a", 1, &late).stale);
    view.remove_from(&key, 1);
    let s = view.snapshot(1, 500, LatencyMs::default());
    assert_eq!(s.figures.transactions, 3);
    assert_eq!(s.figures.merchants, 2);
    assert_eq!(s.figures.peak_tps, 2);
    assert!(view.index().get("m1").is_some());
    assert!(view.index().get("m2").is_none());
    assert!(view.index().get("m3").is_some());
    // Its own close does take it away.
    view.remove_from(&key, 2);
    assert_eq!(
        view.snapshot(2, 500, LatencyMs::default())
            .figures
            .transactions,
        0
    );
}
