//! Damage to one node's WAL (a minority): the node (the leader or any) is killed, one bit
//! of a random WAL segment is flipped or the tail of its last segment is cut off, and it
//! is started again on what is left. A node that finds damage in bytes it had made durable
//! must refuse to start (naming the file and offset) rather than serve or vote on a log
//! that lost acknowledged writes; the fault's end then does what an operator does: remove
//! the node from the membership, wipe its data, start it and add it back.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use serde_json::json;

use super::membership::add_back;
use super::{leader_or_any, Nemesis, Rng};
use crate::cluster::Cluster;

/// How long a damaged node may take to come up or refuse to.
const RECOVERY_WAIT_MAX: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct WalDamage {
    damaged: Option<usize>,
}

impl Nemesis for WalDamage {
    fn name(&self) -> &'static str {
        "wal-damage"
    }

    fn start<'a>(
        &'a mut self,
        cluster: &'a mut Cluster,
        leader: Option<usize>,
        rng: &'a mut Rng,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let (which, node) = leader_or_any(cluster, leader, rng);
            cluster.kill9(node);
            let segments = segments(&cluster.data_dir(node).join("wal"))?;
            let done = match (rng.below(2), segments.last()) {
                (_, None) => "nothing to damage".to_string(),
                (0, Some(last)) => cut_tail(last, rng)?,
                (_, Some(_)) => {
                    let segment = &segments[rng.below(segments.len() as u64) as usize];
                    flip_a_bit(segment, rng)?
                }
            };
            cluster.spawn(node)?;
            self.damaged = Some(node);
            Ok(format!("damage the wal of {which} (n{node}): {done}"))
        })
    }

    fn stop<'a>(&'a mut self, cluster: &'a mut Cluster) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Some(node) = self.damaged.take() else {
                return Ok(());
            };
            if cluster.wait_up_or_exited(node, RECOVERY_WAIT_MAX).await? {
                return Ok(());
            }
            replace(cluster, node)
                .await
                .with_context(|| format!("replace n{node}, which refused its damaged wal"))
        })
    }
}

/// The segment files of a WAL, in log order.
fn segments(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    found.sort();
    Ok(found)
}

fn name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The segment at `path`, open to read and write, and its length; `None` when it is empty.
fn open_segment(path: &Path) -> anyhow::Result<Option<(File, u64)>> {
    let file = (OpenOptions::new().read(true).write(true).open(path))
        .with_context(|| format!("open {}", path.display()))?;
    let len = file.metadata()?.len();
    Ok((len > 0).then_some((file, len)))
}

/// Cuts between 1 byte and half of the segment off its end.
fn cut_tail(path: &Path, rng: &mut Rng) -> anyhow::Result<String> {
    let Some((file, len)) = open_segment(path)? else {
        return Ok(format!("{} is empty", name(path)));
    };
    let cut = 1 + rng.below(len.div_ceil(2));
    file.set_len(len - cut)?;
    file.sync_all()?;
    Ok(format!(
        "cut the last {cut} of {len} bytes of {}",
        name(path)
    ))
}

/// Flips one bit of one byte at random.
fn flip_a_bit(path: &Path, rng: &mut Rng) -> anyhow::Result<String> {
    let Some((file, len)) = open_segment(path)? else {
        return Ok(format!("{} is empty", name(path)));
    };
    let (offset, bit) = (rng.below(len), rng.below(8));
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset)?;
    byte[0] ^= 1 << bit;
    file.write_all_at(&byte, offset)?;
    file.sync_all()?;
    Ok(format!(
        "flip bit {bit} of byte {offset} of {} ({len} bytes)",
        name(path)
    ))
}

/// What an operator does with a node that refuses its damaged data: remove it from the
/// membership, wipe its data, start it empty and add it back, so it copies the log anew.
async fn replace(cluster: &mut Cluster, node: usize) -> anyhow::Result<()> {
    let client = crate::connect::cluster(&cluster.flight_addrs()).await?;
    match client
        .action("remove_node", &json!({ "node_id": node }))
        .await
    {
        Ok(_) => {}
        Err(e) if e.to_string().contains("not a member") => {}
        Err(e) => return Err(e.into()),
    }
    let dir = cluster.data_dir(node);
    std::fs::remove_dir_all(&dir).with_context(|| format!("wipe {}", dir.display()))?;
    cluster.spawn(node)?;
    add_back(cluster, node).await
}
