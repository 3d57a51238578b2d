//! Snapshots: a copy of the state taken between two applies (so it holds exactly the effect
//! of the entries up to its log id), kept as one file under `<data-dir>/snapshots/`.
//!
//! A file is written under a temporary name, fsynced, renamed into place and the directory
//! fsynced, so a crash leaves the old snapshot or the new one, never a mix. Its payload
//! carries a CRC32C: a damaged snapshot is refused, not half read. Snapshots hold metadata
//! only (tables, schemas, the index of writes in the WAL, dedup state, watermarks, the
//! tiered-file list); the data is in the WAL or in object storage.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arka_cluster::types::{LogId, SnapshotMeta, StoredMembership};
use arka_cluster::TieredFile;
use serde::{Deserialize, Serialize};

use super::catalog::{IndexEntry, TableCounts, TableMeta};
use super::chunk_map::ChunkMap;
use super::data::{table_info, StateData};
use super::dedup::Dedup;
use super::error::{decode, encode, StateError, StateResult};
use super::lake_drops::LakeDrops;
use super::leaderships::Leaderships;
use super::sessions::Sessions;
use super::table_commits::TableCommits;
use super::tier::TierState;
use crate::table::TableName;

const MAGIC: &[u8; 8] = b"ARKASNP1";
const SUFFIX: &str = "snap";

/// The state as a snapshot holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    applied: Option<LogId>,
    membership: StoredMembership,
    tables: Vec<(String, TableMeta, TableCounts)>,
    /// Encoded as `Vec<(u64, IndexEntry)>` was: see [`ChunkMap`].
    index: Vec<(String, ChunkMap<u64, IndexEntry>)>,
    index_floor: u64,
    dedup: Dedup,
    tier: TierState,
    tiered: Vec<(String, TieredFiles)>,
    last_data_lsn: u64,
    /// Encoded after the image, not in it, so that images taken before producer sessions
    /// existed (which end where this would begin) still decode: see [`encode_image`].
    #[serde(skip)]
    sessions: Sessions,
    /// Encoded after the sessions, for the same reason.
    #[serde(skip)]
    leaderships: Leaderships,
    /// Encoded after the leaderships, for the same reason.
    #[serde(skip)]
    commits: TableCommits,
    /// Encoded after the table commits, for the same reason.
    #[serde(skip)]
    lake_drops: LakeDrops,
}

impl StateData {
    pub fn image(&self) -> Image {
        Image {
            applied: self.applied,
            membership: self.membership.clone(),
            tables: (self.tables.iter())
                .map(|(n, t)| (n.to_string(), (*t.meta).clone(), t.counts))
                .collect(),
            index: (self.index.iter())
                .map(|(n, w)| (n.to_string(), w.clone()))
                .collect(),
            index_floor: self.index_floor,
            dedup: self.dedup.clone(),
            tier: self.tier,
            tiered: (self.tiered.iter())
                .map(|(n, f)| (n.to_string(), TieredFiles(f.clone())))
                .collect(),
            last_data_lsn: self.last_data_lsn,
            sessions: self.sessions.clone(),
            leaderships: self.leaderships.clone(),
            commits: self.commits.clone(),
            lake_drops: self.lake_drops.clone(),
        }
    }

    /// The state an image holds; a table name or schema that does not parse is corruption.
    pub fn from_image(image: Image) -> StateResult<Self> {
        let name = |n: &str| {
            TableName::parse(n).map_err(|e| StateError::Corrupt {
                what: format!("snapshot table name {n:?}"),
                reason: e.to_string(),
            })
        };
        let mut data = StateData {
            applied: image.applied,
            membership: image.membership,
            index_floor: image.index_floor,
            dedup: image.dedup,
            sessions: image.sessions,
            leaderships: image.leaderships,
            commits: image.commits,
            lake_drops: image.lake_drops,
            tier: image.tier,
            last_data_lsn: image.last_data_lsn,
            ..Default::default()
        };
        // Images taken before tables could be held back hold only the watermark.
        data.commits.raise_to(data.tier.committed_lsn);
        for (n, meta, counts) in image.tables {
            data.tables.insert(name(&n)?, table_info(meta, counts)?);
        }
        for (n, writes) in image.index {
            data.index.insert(name(&n)?, writes);
        }
        for (n, files) in image.tiered {
            data.tiered.insert(name(&n)?, files.0);
        }
        Ok(data)
    }

    pub fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
        }
    }
}

/// A table's tiered files by their last LSN, encoded as the plain sequence of files that
/// snapshot files have always held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TieredFiles(ChunkMap<u64, TieredFile>);

impl Serialize for TieredFiles {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (_, file) in self.0.iter() {
            seq.serialize_element(file)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for TieredFiles {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let files = Vec::<TieredFile>::deserialize(deserializer)?;
        Ok(Self(
            files.into_iter().map(|f| (f.max_lsn.get(), f)).collect(),
        ))
    }
}

/// Encodes an image as openraft carries it between nodes: the image, then its sessions, its
/// leaderships, its table commits and its lake drops. Each part added later goes after the
/// others, so older images decode.
pub fn encode_image(image: &Image) -> StateResult<Vec<u8>> {
    let mut bytes = encode(image)?;
    bytes.extend(encode(&image.sessions)?);
    bytes.extend(encode(&image.leaderships)?);
    bytes.extend(encode(&image.commits)?);
    bytes.extend(encode(&image.lake_drops)?);
    Ok(bytes)
}

/// Decodes what [`encode_image`] made; an image that ends early has the parts it lacks empty.
pub fn decode_image(bytes: &[u8]) -> StateResult<Image> {
    let corrupt = |e: postcard::Error| StateError::Decode {
        key: "snapshot image".into(),
        reason: e.to_string(),
    };
    let (mut image, rest): (Image, _) = postcard::take_from_bytes(bytes).map_err(corrupt)?;
    if rest.is_empty() {
        return Ok(image);
    }
    let (sessions, rest) = postcard::take_from_bytes(rest).map_err(corrupt)?;
    image.sessions = sessions;
    if rest.is_empty() {
        return Ok(image);
    }
    let (leaderships, rest) = postcard::take_from_bytes(rest).map_err(corrupt)?;
    image.leaderships = leaderships;
    if rest.is_empty() {
        return Ok(image);
    }
    let (commits, rest) = postcard::take_from_bytes(rest).map_err(corrupt)?;
    image.commits = commits;
    if !rest.is_empty() {
        image.lake_drops = postcard::from_bytes(rest).map_err(corrupt)?;
    }
    Ok(image)
}

/// What one snapshot file holds.
#[derive(Deserialize)]
struct Stored {
    meta: SnapshotMeta,
    image: Vec<u8>,
}

/// [`Stored`] as it is written, borrowing the encoded image instead of copying it.
#[derive(Serialize)]
struct StoredRef<'a> {
    meta: &'a SnapshotMeta,
    image: &'a [u8],
}

/// The snapshot directory of a node.
#[derive(Debug, Clone)]
pub struct SnapshotFiles {
    dir: PathBuf,
    /// The log id of the newest snapshot file, once saved or read.
    current: Arc<Mutex<Option<Option<LogId>>>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl SnapshotFiles {
    pub fn open(dir: PathBuf) -> StateResult<Self> {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // A crash during `save` leaves its temporary file; the snapshot it was to become
        // was never current.
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("tmp") {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(Self {
            dir,
            current: Arc::default(),
        })
    }

    fn remember(&self, last_log_id: Option<LogId>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(last_log_id);
    }

    /// The log id of the current snapshot file, if it is known without reading the file.
    pub fn current_log_id(&self) -> Option<Option<LogId>> {
        *self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path_of(&self, meta: &SnapshotMeta) -> PathBuf {
        let index = meta.last_log_id.map_or(0, |l| l.index);
        self.dir.join(format!("{index:020}.{SUFFIX}"))
    }

    fn listed(&self) -> StateResult<Vec<PathBuf>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            if path.extension().and_then(|e| e.to_str()) == Some(SUFFIX) {
                found.push(path);
            }
        }
        // Names are zero-padded indexes: their order is the log order.
        found.sort();
        Ok(found)
    }

    /// Makes `meta` + `image` the current snapshot, durably, and removes older ones.
    pub fn save(&self, meta: &SnapshotMeta, image: &[u8]) -> StateResult<()> {
        let path = self.path_of(meta);
        let payload = encode(&StoredRef { meta, image })?;
        let tmp = path.with_extension("tmp");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        file.write_all(MAGIC)
            .and_then(|_| file.write_all(&(payload.len() as u64).to_le_bytes()))
            .and_then(|_| file.write_all(&crc32c::crc32c(&payload).to_le_bytes()))
            .and_then(|_| file.write_all(&payload))
            .and_then(|_| file.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        self.sync_dir()?;
        self.remember(meta.last_log_id);
        for older in self.listed()?.into_iter().filter(|p| *p < path) {
            std::fs::remove_file(&older).map_err(io(&older))?;
        }
        self.sync_dir()
    }

    fn sync_dir(&self) -> StateResult<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }

    /// The newest snapshot: its meta and encoded image.
    pub fn newest(&self) -> StateResult<Option<(SnapshotMeta, Vec<u8>)>> {
        let Some(path) = self.listed()?.pop() else {
            return Ok(None);
        };
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let corrupt = |reason: &str| StateError::Corrupt {
            what: format!("snapshot file {}", path.display()),
            reason: reason.to_string(),
        };
        let head = 8 + 8 + 4;
        if bytes.len() < head || &bytes[..8] != MAGIC {
            return Err(corrupt("not an arka snapshot file"));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[8..16]);
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&bytes[16..20]);
        let payload = &bytes[head..];
        if payload.len() as u64 != u64::from_le_bytes(len) {
            return Err(corrupt("length does not match the file"));
        }
        if crc32c::crc32c(payload) != u32::from_le_bytes(crc) {
            return Err(corrupt("checksum mismatch"));
        }
        let stored: Stored = decode(b"snapshot file", payload)?;
        self.remember(stored.meta.last_log_id);
        Ok(Some((stored.meta, stored.image)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_keeps_its_sessions_leaderships_holds_and_drops_and_older_images_still_decode() {
        let mut data = StateData::default();
        data.sessions.register("p", 7, 3);
        let held = arka_cluster::HeldBackTable {
            table: "b".into(),
            reason: "refused".into(),
        };
        data.commits.commit(arka_cluster::Lsn(5), &[]);
        data.commits.commit(arka_cluster::Lsn(9), &[held]);
        data.tier.committed_lsn = data.commits.watermark();
        let leader = openraft::impls::leader_id_adv::LeaderId {
            term: 4,
            node_id: arka_cluster::NodeId(2),
        };
        data.leaderships.note(&LogId::new(leader, 6));
        data.lake_drops.add(crate::state::DroppedTable {
            table: "c".into(),
            created_lsn: arka_cluster::Lsn(2),
            dropped_lsn: arka_cluster::Lsn(8),
        });
        let image = data.image();
        let decoded = decode_image(&encode_image(&image).expect("encode")).expect("decode");
        assert_eq!(decoded, image);
        let restored = StateData::from_image(decoded).expect("state");
        assert_eq!(restored.sessions.len(), 1);
        assert_eq!(restored.leaderships.leader_at(9), Some(leader));
        assert_eq!(restored.commits, data.commits);
        assert_eq!(restored.lake_drops, data.lake_drops);

        let before_sessions = encode(&image).expect("encode without sessions");
        let decoded = decode_image(&before_sessions).expect("decode an older image");
        assert_eq!(decoded.sessions, Sessions::default());

        let mut before_leaderships = encode(&image).expect("encode the image");
        before_leaderships.extend(encode(&image.sessions).expect("encode the sessions"));
        let decoded = decode_image(&before_leaderships).expect("decode an older image");
        assert_eq!(decoded.sessions, image.sessions);
        assert_eq!(decoded.leaderships, Leaderships::default());

        let mut before_holds = before_leaderships;
        before_holds.extend(encode(&image.leaderships).expect("encode the leaderships"));
        let decoded = decode_image(&before_holds).expect("decode an older image");
        assert_eq!(decoded.leaderships, image.leaderships);
        let restored = StateData::from_image(decoded).expect("state");
        assert_eq!(
            restored.commits.position("a"),
            arka_cluster::Lsn(5),
            "the watermark, for every table"
        );

        let mut before_drops = before_holds;
        before_drops.extend(encode(&image.commits).expect("encode the commits"));
        let decoded = decode_image(&before_drops).expect("decode an older image");
        assert_eq!(decoded.commits, image.commits);
        assert!(decoded.lake_drops.is_empty());
    }
}
