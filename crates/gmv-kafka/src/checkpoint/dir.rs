//! Durable per-partition checkpoints in a local directory.
//!
//! Each partition has a chain of files under `DIR/TOPIC/PARTITION/`:
//! `SEQ.base` (the whole state) followed by `SEQ.delta` files (the ids first
//! seen since the previous link, plus the full figures). A file is written to
//! a temporary name, fsynced, renamed into place and the directory fsynced,
//! so a crash leaves either the old chain or the new link, never half a file
//! under a real name. Each file carries a checksum (see
//! [`gmv_core::state::Checkpoint`]).
//!
//! Loading takes the newest base that verifies and the unbroken run of deltas
//! after it that verify. Anything else (a torn or corrupt file, and every
//! link after it) is renamed aside as `*.corrupt` with a warning naming it,
//! so the partition resumes from the last good state and re-reads the log
//! from that state's offset: never silently wrong totals. The previous base
//! and its deltas are kept as a fallback until the next base is written.

use super::{decode_link, select_chain, Kind, Loaded};
use crate::KafkaError;
use gmv_core::state::Checkpoint;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The checkpoint directory.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    root: PathBuf,
}

impl CheckpointDir {
    /// Uses `root`, creating it if needed.
    pub fn open(root: &Path) -> Result<Self, KafkaError> {
        fs::create_dir_all(root).map_err(|source| KafkaError::Checkpoint {
            dir: root.to_path_buf(),
            source,
        })?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The directory of one partition's chain.
    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.root.join(topic).join(partition.to_string())
    }

    /// Makes `checkpoint` durable as the next link of its partition's chain;
    /// returns its checksum (the next delta's parent).
    pub fn save(
        &self,
        topic: &str,
        partition: i32,
        checkpoint: &Checkpoint,
    ) -> Result<u64, KafkaError> {
        let dir = self.partition_dir(topic, partition);
        self.write_link(&dir, checkpoint)
            .map_err(|source| KafkaError::Checkpoint { dir, source })
    }

    fn write_link(&self, dir: &Path, checkpoint: &Checkpoint) -> io::Result<u64> {
        fs::create_dir_all(dir)?;
        let kind = checkpoint.kind;
        let (bytes, checksum) = checkpoint.encode_with_checksum();
        let path = dir.join(file_name(checkpoint.seq, kind));
        let tmp = dir.join(format!("{}.tmp", file_name(checkpoint.seq, kind)));
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()?;
        if kind == Kind::Base {
            self.prune(dir, checkpoint.seq)?;
        }
        Ok(checksum)
    }

    /// Keeps the newest base (just written), the base before it and that
    /// base's deltas; removes older links.
    fn prune(&self, dir: &Path, newest_base: u64) -> io::Result<()> {
        let links = list(dir)?;
        let previous_base = links
            .iter()
            .filter(|(seq, kind, _)| *kind == Kind::Base && *seq < newest_base)
            .map(|(seq, _, _)| *seq)
            .max();
        let Some(keep_from) = previous_base else {
            return Ok(());
        };
        for (seq, _, path) in links {
            if seq < keep_from {
                fs::remove_file(path)?;
            }
        }
        Ok(())
    }

    /// Loads a partition's chain (see [`super::select_chain`]); renames the
    /// links set aside to `*.corrupt`, for inspection.
    pub fn load(&self, topic: &str, partition: i32) -> Result<Loaded, KafkaError> {
        let dir = self.partition_dir(topic, partition);
        self.read_chain(&dir)
            .map_err(|source| KafkaError::Checkpoint { dir, source })
    }

    fn read_chain(&self, dir: &Path) -> io::Result<Loaded> {
        if !dir.is_dir() {
            return Ok(Loaded::default());
        }
        let links = list(dir)?;
        let chain = select_chain(&links, |path, seq| {
            let bytes = fs::read(path).map_err(|e| format!("unreadable: {e}"))?;
            decode_link(&bytes, seq)
        });
        for (path, _) in &chain.set_aside {
            let mut aside = path.clone().into_os_string();
            aside.push(".corrupt");
            fs::rename(path, aside)?;
        }
        Ok(chain.map_set_aside(|path| path.display().to_string()))
    }
}

fn file_name(seq: u64, kind: Kind) -> String {
    format!("{seq:012}.{}", kind.as_str())
}

/// The links in `dir`, by sequence number (temporary and set-aside files are
/// not links).
fn list(dir: &Path) -> io::Result<Vec<(u64, Kind, PathBuf)>> {
    let mut links = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let parsed = name
            .split_once('.')
            .and_then(|(seq, kind)| Some((seq.parse().ok()?, Kind::parse(kind)?)));
        if let Some((seq, kind)) = parsed {
            links.push((seq, kind, path));
        }
    }
    links.sort_by_key(|l| l.0);
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gmv_core::partition::{decode, Partition};
    use gmv_core::Settings;
    use std::sync::Arc;

    fn engine_with(n: usize) -> Partition {
        let settings = Arc::new(Settings::defaults());
        let mut partition = Partition::new(settings.clone(), 1 << 16).journaled();
        for i in 0..n {
            let e = format!(
                r#"{{"txn_id":"t{i}","merchant_id":"m{}","amount":"1.00","channel":"mobile","settled_at":"2017-11-11T00:00:01+08:00"}}"#,
                i % 5
            );
            let d = decode(&settings, e.as_bytes()).unwrap();
            partition.count(i as i64, Ok(d.txn())).unwrap();
        }
        partition
    }

    /// Link `seq` of `partition`, claiming to cover offsets up to `next`.
    fn link(partition: &mut Partition, seq: u64, parent: Option<u64>, next: i64) -> Checkpoint {
        let mut checkpoint = partition.checkpoint(seq, parent);
        checkpoint.first_offset = 0;
        checkpoint.next_offset = next;
        checkpoint
    }

    #[test]
    fn a_corrupt_newest_link_falls_back_to_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path()).unwrap();
        let mut engine = engine_with(10);
        let first = store.save("t", 0, &link(&mut engine, 1, None, 10)).unwrap();
        let second = store
            .save("t", 0, &link(&mut engine, 2, Some(first), 10))
            .unwrap();
        store
            .save("t", 0, &link(&mut engine, 3, Some(second), 10))
            .unwrap();
        let second = store.partition_dir("t", 0).join(file_name(2, Kind::Delta));
        let mut bytes = fs::read(&second).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        fs::write(&second, bytes).unwrap();

        let loaded = store.load("t", 0).unwrap();
        assert_eq!(loaded.chain.iter().map(|c| c.seq).collect::<Vec<_>>(), [1]);
        assert_eq!(loaded.set_aside.len(), 2, "{:?}", loaded.set_aside);
        assert!(loaded.set_aside[0].1.contains("checksum"));
        // Set aside for inspection, and no longer part of any chain.
        assert!(!second.exists());
        assert_eq!(store.load("t", 0).unwrap().chain.len(), 1);
    }

    #[test]
    fn a_truncated_base_falls_back_to_the_previous_base() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path()).unwrap();
        let mut engine = engine_with(10);
        let first = store.save("t", 3, &link(&mut engine, 1, None, 5)).unwrap();
        store
            .save("t", 3, &link(&mut engine, 2, Some(first), 7))
            .unwrap();
        store.save("t", 3, &link(&mut engine, 3, None, 10)).unwrap();
        let newest = store.partition_dir("t", 3).join(file_name(3, Kind::Base));
        let bytes = fs::read(&newest).unwrap();
        fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
        let loaded = store.load("t", 3).unwrap();
        assert_eq!(loaded.chain.last().unwrap().next_offset, 7);
        assert!(
            loaded.set_aside[0].1.contains("truncated"),
            "{:?}",
            loaded.set_aside
        );
    }

    #[test]
    fn old_links_are_pruned_after_two_bases() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path()).unwrap();
        let mut engine = engine_with(3);
        let mut tip = None;
        for seq in 1..=7 {
            let extends = if seq % 3 == 1 { None } else { tip };
            let checkpoint = link(&mut engine, seq, extends, seq as i64);
            tip = Some(store.save("t", 1, &checkpoint).unwrap());
        }
        // Bases at 1, 4, 7: 1..=3 pruned, 4..=7 kept.
        let names: Vec<u64> = list(&store.partition_dir("t", 1))
            .unwrap()
            .iter()
            .map(|l| l.0)
            .collect();
        assert_eq!(names, [4, 5, 6, 7]);
        assert_eq!(store.load("t", 1).unwrap().chain.len(), 1);
    }

    #[test]
    fn a_delta_that_extends_another_writers_link_ends_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path()).unwrap();
        let mut owner = engine_with(10);
        let base = store.save("t", 2, &link(&mut owner, 1, None, 10)).unwrap();
        let owners_second = store
            .save("t", 2, &link(&mut owner, 2, Some(base), 12))
            .unwrap();
        // A paused former owner wakes and writes its own link 2 over it
        // (self-consistent: its state and its offset) ...
        let mut former = engine_with(10);
        let formers_second = store
            .save("t", 2, &link(&mut former, 2, Some(base), 11))
            .unwrap();
        assert_ne!(formers_second, owners_second);
        // ... and the owner's link 3 extends the link 2 that is gone.
        store
            .save("t", 2, &link(&mut owner, 3, Some(owners_second), 14))
            .unwrap();

        let loaded = store.load("t", 2).unwrap();
        let offsets: Vec<i64> = loaded.chain.iter().map(|c| c.next_offset).collect();
        assert_eq!(
            offsets,
            [10, 11],
            "resume from the former owner's consistent link"
        );
        assert_eq!(loaded.tip, Some(formers_second));
        assert_eq!(loaded.set_aside.len(), 1, "{:?}", loaded.set_aside);
        assert!(loaded.set_aside[0].1.contains("two writers"));
    }

    #[test]
    fn a_chain_in_an_earlier_format_is_refused_and_left_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointDir::open(dir.path()).unwrap();
        let mut engine = engine_with(3);
        store.save("t", 4, &link(&mut engine, 1, None, 3)).unwrap();
        let path = store.partition_dir("t", 4).join(file_name(1, Kind::Base));
        let mut bytes = fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        fs::write(&path, bytes).unwrap();
        let loaded = store.load("t", 4).unwrap();
        assert!(loaded.chain.is_empty());
        assert!(loaded.set_aside.is_empty());
        let why = loaded.refused.unwrap();
        assert!(why.contains("checkpoint format 2"), "{why}");
        assert!(path.exists(), "an old chain is not renamed aside");
    }
}
