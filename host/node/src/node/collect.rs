//! A member's part in collecting the cluster's ingest streams (see
//! `weir_cluster::collect`): with every heartbeat it reports how far its
//! readers need each stream, for the metadata epoch it has acted on (every
//! vertex placed here then runs and holds its inputs), and it collects its
//! copy of each stream below the point the coordinator sets.

use std::sync::Mutex;

use weir_cluster::metadata::Metadata;
use weir_net::cluster::StreamNeeds;

use super::*;

/// The metadata epoch a member acted on last, with its copies of the
/// cluster's ingest streams then.
#[derive(Debug)]
pub(super) struct Acted {
    epoch: u64,
    /// Each stream's name and the id of its copy here.
    streams: Vec<(String, u64)>,
}

/// What the heartbeat reports: how far the readers here need each ingest
/// stream, once the member has acted on the metadata.
pub(super) fn needs(jobs: &Jobs, acted: &Mutex<Option<Acted>>) -> Option<StreamNeeds> {
    // The epoch first: holds registered since are as new or newer.
    let (epoch, streams) = {
        let acted = acted.lock().unwrap_or_else(|e| e.into_inner());
        let acted = acted.as_ref()?;
        (acted.epoch, acted.streams.clone())
    };
    Some(StreamNeeds {
        epoch,
        streams: streams
            .into_iter()
            .filter_map(|(name, id)| Some((name, jobs.needs(id)?)))
            .collect(),
    })
}

impl Node {
    /// Notes that every vertex `metadata` places here runs and holds its
    /// inputs.
    pub(super) fn acted_on(&self, metadata: &Metadata) {
        let streams = metadata
            .streams
            .keys()
            .filter_map(|name| Some((name.clone(), self.streams.info(name).ok()?.id)))
            .collect();
        *self.acted.lock().unwrap_or_else(|e| e.into_inner()) = Some(Acted {
            epoch: metadata.epoch,
            streams,
        });
    }

    /// Collects this member's copy of each ingest stream below the
    /// stream's collection point; a copy that ends before the point (it was
    /// never filled that far) goes on from there.
    pub(super) fn collect_copies(&self, metadata: &Metadata) {
        for (name, s) in metadata.streams.iter().filter(|(_, s)| s.low > 0) {
            let Ok(info) = self.streams.info(name) else {
                continue;
            };
            let next = self.streams.positions(info.id).map_or(0, |p| p.0);
            let collected = match next < s.low {
                true => self.streams.skip_to(info.id, s.low),
                false => self.streams.gc(info.id, s.low),
            };
            if let Err(e) = collected {
                tracing::warn!(stream = %name, "collecting below seq {}: {e}", s.low);
            }
        }
    }
}
