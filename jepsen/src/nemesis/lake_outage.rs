//! The lake goes away while writes go on: the object store cut off from every node (its
//! requests hang), the catalog service crashed (connections refused; it restarts on its
//! database when the fault ends), both cut off, or both losing their answers: requests are
//! carried out but no answer comes back, and when the fault ends the nodes' connections to
//! them are aborted, so a catalog commit or an upload has happened while its sender saw it
//! fail. Writes must still be acked REPLICATED, and once the lake is back, tiering must
//! catch up, each write committed once: after healing the run flushes and holds each
//! Iceberg table to the log.

use std::time::Duration;

use futures::future::BoxFuture;

use super::{Nemesis, Rng};
use crate::cluster::Cluster;
use crate::net::Network;
use crate::remote_lake::RemoteLake;

const LAKE_PORTS: [u16; 2] = [RemoteLake::OBJECT_STORE_PORT, RemoteLake::CATALOG_PORT];

#[derive(Default)]
pub struct LakeOutage {
    /// Which fault is on.
    fault: Option<Fault>,
}

#[derive(Clone, Copy)]
enum Fault {
    ObjectStoreCut,
    CatalogDown,
    LakeCut,
    AnswersLost,
}

impl Nemesis for LakeOutage {
    fn name(&self) -> &'static str {
        "lake-outage"
    }

    fn needs_remote_lake(&self) -> bool {
        true
    }

    fn fault_length(&self) -> (Duration, Duration) {
        // Long enough for several commit intervals (1 s) and tier uploads to fail.
        (Duration::from_secs(3), Duration::from_secs(10))
    }

    fn start<'a>(
        &'a mut self,
        cluster: &'a mut Cluster,
        _leader: Option<usize>,
        rng: &'a mut Rng,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let fault = match rng.below(4) {
                0 => Fault::ObjectStoreCut,
                1 => Fault::CatalogDown,
                2 => Fault::LakeCut,
                _ => Fault::AnswersLost,
            };
            const STORE: [u16; 1] = [RemoteLake::OBJECT_STORE_PORT];
            let what = match fault {
                Fault::ObjectStoreCut => {
                    on_every_node(cluster, &STORE, Network::cut_service)?;
                    "cut the object store off from every node"
                }
                Fault::LakeCut => {
                    on_every_node(cluster, &LAKE_PORTS, Network::cut_service)?;
                    "cut the object store and the catalog off from every node"
                }
                Fault::CatalogDown => {
                    lake(cluster)?.stop_catalog();
                    "crash the catalog"
                }
                Fault::AnswersLost => {
                    on_every_node(cluster, &LAKE_PORTS, Network::lose_service_answers)?;
                    "lose the object store's and the catalog's answers to every node"
                }
            };
            self.fault = Some(fault);
            Ok(what.to_string())
        })
    }

    fn stop<'a>(&'a mut self, cluster: &'a mut Cluster) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            match self.fault.take() {
                Some(Fault::CatalogDown) => lake(cluster)?.start_catalog()?,
                Some(fault) => {
                    if let Fault::AnswersLost = fault {
                        on_every_node(cluster, &LAKE_PORTS, Network::abort_service_connections)?;
                    }
                    for node in 1..=cluster.nodes() {
                        cluster.net.heal(node)?;
                    }
                }
                None => {}
            }
            Ok(())
        })
    }
}

/// `act(network, node, port)` for each node and each of `ports`.
fn on_every_node(
    cluster: &Cluster,
    ports: &[u16],
    act: fn(&Network, usize, u16) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for node in 1..=cluster.nodes() {
        for port in ports {
            act(&cluster.net, node, *port)?;
        }
    }
    Ok(())
}

fn lake(cluster: &mut Cluster) -> anyhow::Result<&mut RemoteLake> {
    (cluster.lake.as_mut())
        .ok_or_else(|| anyhow::anyhow!("the lake-outage nemesis needs a remote lake"))
}
