use super::*;
use crate::state::StateError;
use proptest::prelude::*;

fn event(txn: &str, merchant: &str, amount: &str, channel: &str, at: &str) -> String {
    format!(
        r#"{{"txn_id":"{txn}","merchant_id":"{merchant}","amount":"{amount}","channel":"{channel}","settled_at":"{at}"}}"#
    )
}

fn settings() -> Arc<Settings> {
    Arc::new(Settings::defaults())
}

fn partition() -> Partition {
    Partition::new(settings(), 1 << 16).journaled()
}

/// Decodes and counts one record at `position`.
fn feed(p: &mut Partition, position: i64, record: &str) -> Result<(), Rejection> {
    let decoded = decode(p.settings(), record.as_bytes());
    let txn = decoded.as_ref().map(Decoded::txn).map_err(Clone::clone);
    p.count(position, txn)
}

#[test]
fn duplicate_txn_is_counted_once_and_conflict_never() {
    let mut p = partition();
    let e = event("t1", "m1", "10.00", "mobile", "2017-11-11T00:00:01+08:00");
    assert!(feed(&mut p, 0, &e).is_ok());
    assert_eq!(feed(&mut p, 1, &e).unwrap_err().reason, Reason::Duplicate);
    let changed = event("t1", "m1", "11.00", "mobile", "2017-11-11T00:00:01+08:00");
    assert_eq!(
        feed(&mut p, 2, &changed).unwrap_err().reason,
        Reason::Conflict
    );
    let outside = event("t2", "m1", "10.00", "pc", "2017-11-12T00:00:00+08:00");
    assert_eq!(
        feed(&mut p, 3, &outside).unwrap_err().reason,
        Reason::OutsideWindow
    );
    let delta = p.take_delta();
    assert_eq!(delta.totals.gmv, 1_000);
    assert_eq!(delta.consumed, 4);
    assert_eq!(delta.totals.transactions, 1);
    assert_eq!(delta.rejected.total(), 3);
    assert_eq!(delta.rejected.get(Reason::Duplicate), 1);
    assert_eq!(delta.rejected.get(Reason::Conflict), 1);
    assert_eq!((delta.first_position, delta.next_position), (0, 4));
}

#[test]
fn an_invalid_record_does_not_claim_its_txn_id() {
    let mut p = partition();
    let bad = event("t1", "m1", "-1.00", "mobile", "2017-11-11T00:00:01+08:00");
    assert_eq!(
        feed(&mut p, 0, &bad).unwrap_err().reason,
        Reason::InvalidAmount
    );
    let good = event("t1", "m1", "1.00", "mobile", "2017-11-11T00:00:01+08:00");
    assert!(feed(&mut p, 1, &good).is_ok());
}

#[test]
fn a_crossing_is_the_event_that_takes_the_merchant_over_in_log_order() {
    let mut settings = Settings::defaults();
    settings.thresholds = vec![1_000, 2_000, 5_000];
    let mut p = Partition::new(Arc::new(settings), 1 << 16);
    let at = |s: u32| format!("2017-11-11T00:00:{s:02}+08:00");
    feed(&mut p, 10, &event("a", "m1", "9.00", "mobile", &at(1))).unwrap();
    feed(&mut p, 11, &event("b", "m2", "1.00", "mobile", &at(2))).unwrap();
    // Takes m1 from 9.00 over both 10.00 and 20.00 in one event.
    feed(&mut p, 12, &event("c", "m1", "12.00", "pc", &at(3))).unwrap();
    feed(&mut p, 13, &event("d", "m1", "28.00", "pc", &at(4))).unwrap();
    feed(&mut p, 14, &event("e", "m1", "1.00", "pc", &at(5))).unwrap();
    let crossings = p.crossings();
    let seen: Vec<(u64, u64, i64)> = crossings
        .iter()
        .map(|c| (c.threshold, c.gmv_at_crossing, c.position))
        .collect();
    assert_eq!(
        seen,
        [
            (1_000, 2_100, 12),
            (2_000, 2_100, 12),
            (5_000, 4_900 + 100, 14)
        ]
    );
    assert_eq!(
        crossings[2].settled_at,
        p.settings().window.start_millis() + 5_000
    );
    let delta = p.take_delta();
    assert_eq!(delta.threshold_merchants, vec![1, 1, 1]);
    assert_eq!(delta.crossings.len(), 3);
    assert!(p.take_delta().crossings.is_empty());
}

#[test]
fn deltas_carry_each_change_once() {
    let mut p = partition();
    assert!(!p.has_unpublished());
    feed(
        &mut p,
        0,
        &event("a", "m1", "1.00", "mobile", "2017-11-11T00:00:01+08:00"),
    )
    .unwrap();
    feed(
        &mut p,
        1,
        &event("b", "m2", "2.00", "pc", "2017-11-11T01:00:01+08:00"),
    )
    .unwrap();
    assert!(p.has_unpublished());
    let first = p.take_delta();
    assert_eq!(first.merchants.len(), 2);
    assert_eq!(
        first.hours.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
        [0, 1]
    );
    assert!(!p.has_unpublished());
    feed(
        &mut p,
        2,
        &event("c", "m2", "3.00", "pc", "2017-11-11T01:00:02+08:00"),
    )
    .unwrap();
    let second = p.take_delta();
    assert_eq!(second.merchants.len(), 1);
    assert_eq!(second.merchants[0].gmv, 500);
    assert_eq!(second.hours.len(), 1);
    assert_eq!(second.totals.gmv, 600);
    assert_eq!(second.totals.merchants, 2);
}

#[test]
fn oversize_records_are_refused_before_parsing() {
    let mut p = partition();
    let huge = " ".repeat(p.settings().max_event_bytes + 1);
    assert_eq!(feed(&mut p, 0, &huge).unwrap_err().reason, Reason::Oversize);
}

/// `n` events over 7 merchants; the last sixth reuse earlier `txn_id`s of
/// the same merchant at another time (conflicts).
fn day(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let txn = i % (n * 5 / 6).max(1);
            event(
                &format!("t{txn}"),
                &format!("m{}", txn % 7),
                "40000000.00",
                if i % 3 == 0 { "pc" } else { "mobile" },
                &format!(
                    "2017-11-11T{:02}:{:02}:{:02}+08:00",
                    i / 3600 % 24,
                    i / 60 % 60,
                    i % 60
                ),
            )
        })
        .collect()
}

#[test]
fn a_partition_restored_from_a_base_and_deltas_continues_exactly() {
    let events = day(300);
    let run = |p: &mut Partition, range: std::ops::Range<usize>| {
        for i in range {
            let _ = feed(p, i as i64, &events[i]);
        }
    };
    let mut whole = partition();
    run(&mut whole, 0..300);

    let mut live = partition();
    run(&mut live, 0..100);
    let (base, base_checksum) = live.checkpoint(1, None).encode_with_checksum();
    run(&mut live, 100..200);
    let delta = live.checkpoint(2, Some(base_checksum)).encode();
    drop(live);

    let chain: Vec<Checkpoint> = [base, delta]
        .iter()
        .map(|b| Checkpoint::decode(b).unwrap())
        .collect();
    assert_eq!(chain[1].kind, CheckpointKind::Delta);
    assert!(chain[1].merchants.len() <= 7);
    let mut resumed = Partition::restore(settings(), 1 << 16, &chain).unwrap();
    assert_eq!(resumed.next_position(), 200);
    run(&mut resumed, 200..300);
    let (a, b) = (whole.take_delta(), resumed.take_delta());
    assert_eq!(a.totals, b.totals);
    assert_eq!(a.threshold_merchants, b.threshold_merchants);
    assert_eq!((a.consumed, a.rejected), (b.consumed, b.rejected));
    assert_eq!(whole.crossings(), resumed.crossings());
    let mut am: Vec<_> = whole.merchant_figures().collect();
    let mut bm: Vec<_> = resumed.merchant_figures().collect();
    am.sort_by(|x, y| x.merchant_id.cmp(&y.merchant_id));
    bm.sort_by(|x, y| x.merchant_id.cmp(&y.merchant_id));
    assert_eq!(am, bm);
    assert_eq!(whole.series.all(), resumed.series.all());
    assert!(
        a.rejected.get(Reason::Conflict) > 0,
        "the run must exercise the restored dedup set"
    );
}

#[test]
fn the_first_delta_after_a_restore_carries_everything() {
    let mut live = partition();
    for (i, e) in day(50).iter().enumerate() {
        let _ = feed(&mut live, i as i64, e);
    }
    let before = live.take_delta();
    let chain = [live.checkpoint(1, None)];
    let mut resumed = Partition::restore(settings(), 1 << 16, &chain).unwrap();
    let after = resumed.take_delta();
    assert_eq!(after.totals, before.totals);
    assert_eq!(after.merchants.len(), before.merchants.len());
    assert_eq!(after.hours, before.hours);
    assert_eq!(after.crossings, before.crossings);
}

#[test]
fn a_checkpoint_under_other_settings_is_refused() {
    let mut live = partition();
    let chain = [live.checkpoint(1, None)];
    assert!(matches!(
        Partition::restore(settings(), 1 << 15, &chain),
        Err(StateError::SettingsChanged)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The batched path (read-ahead, decode ahead, prefetch) counts exactly
    /// as one record at a time, refusing the same records in order.
    #[test]
    fn process_each_equals_counting_one_by_one(
        picks in proptest::collection::vec((0usize..40, 0usize..5, any::<bool>()), 0..120),
    ) {
        let records: Vec<String> = picks
            .iter()
            .enumerate()
            .map(|(i, &(txn, merchant, bad))| {
                if bad && i % 4 == 0 {
                    "{not json".to_owned()
                } else {
                    event(
                        &format!("t{txn}"),
                        &format!("m{merchant}"),
                        &format!("{}.{:02}", 1 + txn, merchant),
                        if bad { "pc" } else { "mobile" },
                        "2017-11-11T10:00:00+08:00",
                    )
                }
            })
            .collect();
        let mut one = partition();
        let mut refused_one = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if let Err(e) = feed(&mut one, i as i64, r) {
                refused_one.push((i, e.reason));
            }
        }
        let mut batched = partition();
        let mut refused_batched = Vec::new();
        batched.process_each(
            records.iter().enumerate().map(|(i, r)| (i, i as i64, r.as_bytes())),
            |i, _, e| refused_batched.push((i, e.reason)),
        );
        prop_assert_eq!(refused_one, refused_batched);
        let (a, b) = (one.take_delta(), batched.take_delta());
        prop_assert_eq!(a.totals, b.totals);
        prop_assert_eq!(a.crossings, b.crossings);
        prop_assert_eq!(a.rejected, b.rejected);
    }
}

#[test]
fn sixteen_partitions_hold_the_process_bound_together() {
    use crate::dedup::max_allocated_bytes;
    // The process's bound, split evenly: at most max_ids ids, and the bytes
    // one set of max_ids would take but for each partition's own
    // per-table remainder (1 KiB), however the ids fall.
    let max_ids = 512 * 40;
    let settings = settings();
    let share = dedup_share(max_ids, 16);
    let mut parts: Vec<Partition> = (0..16)
        .map(|_| Partition::new(settings.clone(), share))
        .collect();
    for i in 0..max_ids * 3 {
        let record = event(
            &format!("t{i}"),
            &format!("m{}", i % 97),
            "1.00",
            "mobile",
            "2017-11-11T08:00:00+08:00",
        );
        let d = decode(&settings, record.as_bytes()).unwrap();
        let p = partition_of(d.merchant_hash, 16) as usize;
        parts[p].count(i as i64, Ok(d.txn())).unwrap();
    }
    let (ids, bytes) = parts.iter().fold((0, 0), |(ids, bytes), p| {
        let (i, b) = p.dedup_figures();
        (ids + i, bytes + b)
    });
    assert!(ids <= max_ids as u64, "{ids} ids held > {max_ids}");
    assert!(ids >= max_ids as u64 / 4, "kept too few: {ids}");
    let bound = (max_allocated_bytes(max_ids) + 16 * crate::dedup::PER_SET_OVERHEAD) as u64;
    assert!(bytes <= bound, "{bytes} bytes > {bound}");
}

#[test]
fn a_shadow_built_from_deltas_writes_the_base_the_partition_would() {
    let events = day(300);
    let mut live = partition();
    let mut shadow = Partition::new(settings(), 1 << 16);
    // Captures every 60 events: the shadow only ever sees deltas.
    for (i, e) in events.iter().enumerate() {
        let _ = feed(&mut live, i as i64, e);
        if i % 60 == 59 {
            let delta = live.capture(0, CheckpointKind::Delta);
            shadow.extend(&delta).unwrap();
        }
    }
    let from_shadow = shadow.capture(7, CheckpointKind::Base);
    let from_live = live.capture(7, CheckpointKind::Base);
    assert_eq!(from_shadow.next_offset, 300);
    assert_eq!(
        (
            from_shadow.consumed,
            from_shadow.rejected,
            from_shadow.watermark
        ),
        (from_live.consumed, from_live.rejected, from_live.watermark)
    );
    let sorted = |mut m: Vec<MerchantFigures>| {
        m.sort_by(|x, y| x.merchant_id.cmp(&y.merchant_id));
        m
    };
    assert_eq!(
        sorted(from_shadow.merchants.clone()),
        sorted(from_live.merchants.clone())
    );
    assert_eq!(from_shadow.hours, from_live.hours);
    assert_eq!(from_shadow.crossings, from_live.crossings);
    assert_eq!(from_shadow.dedup, from_live.dedup);
    // And it restores to a partition that goes on exactly.
    let resumed = Partition::restore(settings(), 1 << 16, &[from_shadow]).unwrap();
    assert_eq!(resumed.crossings(), live.crossings());
}

#[test]
fn only_a_delta_under_the_same_settings_extends_a_shadow() {
    let mut live = partition();
    let _ = feed(&mut live, 0, &day(1)[0]);
    let base = live.capture(1, CheckpointKind::Base);
    let mut shadow = Partition::new(settings(), 1 << 16);
    assert!(matches!(shadow.extend(&base), Err(StateError::Invalid(_))));
    let delta = live.capture(2, CheckpointKind::Delta);
    let mut other = Partition::new(settings(), 1 << 15);
    assert!(matches!(
        other.extend(&delta),
        Err(StateError::SettingsChanged)
    ));
}

#[test]
fn republish_all_resends_every_merchant_and_hour_and_leaves_checkpoints_their_changes() {
    let mut p = partition();
    let at = "2017-11-11T00:00:01+08:00";
    feed(&mut p, 0, &event("t1", "m1", "10.00", "mobile", at)).unwrap();
    feed(
        &mut p,
        1,
        &event("t2", "m2", "20.00", "pc", "2017-11-11T03:00:00+08:00"),
    )
    .unwrap();
    let first = p.take_delta();
    assert_eq!(first.merchants.len(), 2);
    assert_eq!(first.hours.len(), 2);
    let _ = p.checkpoint(1, None);
    // m1 changes again: the next checkpoint owes it, and only it.
    feed(&mut p, 2, &event("t3", "m1", "5.00", "mobile", at)).unwrap();
    p.republish_all();
    let again = p.take_delta();
    assert_eq!(again.merchants.len(), 2, "every merchant again");
    assert_eq!(again.hours.len(), 2, "every hour again");
    assert!(again.crossings.is_empty());
    let next = p.checkpoint(2, Some(1));
    assert_eq!(next.merchants.len(), 1, "the checkpoint owes m1 alone");
    assert_eq!(next.merchants[0].merchant_id, "m1");
}
