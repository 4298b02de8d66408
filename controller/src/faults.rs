//! Fault profiles as the controller keeps them: checking a request's faults, merging them
//! into a server's profile, clearing kinds, letting faults expire, and choosing the servers a
//! request aims at.
//!
//! The controller is where a server's profile lives. The node applies it (every fault but the
//! partition, which the runtime applies); the agent hands it to the node and again whenever
//! the node restarts, and the controller hands it to an agent again whenever one connects.
//! Durations become absolute expiry times when a fault is set, so that a fault handed over
//! again later still ends when it was meant to.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use farm_proto::limits::{MAX_FAULT_DURATION_SECONDS, MAX_TARGETS};
use farm_proto::v1::{self as pb, FaultKind, FaultProfile, FaultWhen};

use crate::error::{Error, Result};
use crate::registry::{FaultsHandoff, Registry};
use crate::runtime::Runtime;
use crate::status::Status;

/// How long an agent may take to hand its node a profile.
const HANDOFF_DEADLINE: Duration = Duration::from_secs(5);

pub use farm_proto::now_ms;

/// Applies a server's changed profile: the partition through `runtime`, everything else
/// through the server's agent, which hands it to its node. Says what happened.
pub async fn hand_over(
    handoff: FaultsHandoff,
    runtime: Option<Arc<dyn Runtime>>,
) -> std::result::Result<String, String> {
    let cut = handoff.profile.partition.is_some();
    let mut said = Vec::new();
    if cut != handoff.partitioned_before {
        let runtime = runtime
            .ok_or("this controller runs no runtime that can cut a server off the network")?;
        runtime
            .partition(handoff.id, cut)
            .await
            .map_err(|e| e.to_string())?;
        said.push(if cut {
            "cut off from the farm's network"
        } else {
            "joined to the farm's network again"
        });
    }
    if cut {
        // Its agent is out of reach, and its stream with it: end the stream here rather than
        // wait for the connection's keep-alive to notice. The agent gets its profile when it
        // connects again, after the partition ends.
        if !handoff.partitioned_before
            && let Some(link) = &handoff.link
        {
            link.close("cut off from the farm's network by a partition fault");
        }
        return Ok(said.join("; "));
    }
    match &handoff.link {
        None => said.push("kept: the agent is not connected, and gets the faults when it connects"),
        Some(link) => {
            let action = pb::command::Action::SetFaults(pb::SetFaults {
                profile: Some(handoff.profile.clone()),
                version: handoff.version,
            });
            let result = link
                .command(action, HANDOFF_DEADLINE)
                .await
                .map_err(|e| e.to_string())?;
            if !result.ok {
                return Err(result.message);
            }
            said.push(if is_empty(&handoff.profile) {
                "faults cleared"
            } else {
                "faults applied"
            });
        }
    }
    Ok(said.join("; "))
}

/// Every `when` of `profile`, with the name of its kind.
pub fn whens_mut(profile: &mut FaultProfile) -> Vec<(&'static str, &mut Option<FaultWhen>)> {
    let mut whens = Vec::new();
    macro_rules! push {
        ($($kind:ident),*) => {$(
            if let Some(fault) = profile.$kind.as_mut() {
                whens.push((stringify!($kind), &mut fault.when));
            }
        )*};
    }
    push!(
        latency, abort, hang, throughput, connection, rate_limit, health, readiness, partition
    );
    whens
}

/// Whether `profile` has no fault.
pub fn is_empty(profile: &FaultProfile) -> bool {
    *profile == FaultProfile::default()
}

/// Checks the faults a request sets, at `now_ms`, and stamps each with its expiry time
/// (`expires_at_ms`, from `duration_seconds`). Errors name the field under `faults.`.
/// `partition_allowed` says whether the farm's runtime can cut a server off.
pub fn stamp(
    mut faults: FaultProfile,
    now_ms: u64,
    partition_allowed: bool,
) -> Result<FaultProfile> {
    if is_empty(&faults) {
        return Err(Error::InvalidArgument(
            "faults names no fault: give at least one of latency, abort, hang, throughput, connection, rate_limit, health, readiness, partition".into(),
        ));
    }
    if faults.partition.is_some() && !partition_allowed {
        return Err(Error::InvalidArgument(
            "faults.partition needs the docker runtime: a local process cannot be cut off from the network"
                .into(),
        ));
    }
    for (kind, when) in whens_mut(&mut faults) {
        let when = when.get_or_insert_with(FaultWhen::default);
        if when.duration_seconds > MAX_FAULT_DURATION_SECONDS {
            return Err(Error::InvalidArgument(format!(
                "faults.{kind}.when.duration_seconds must be 0 to {MAX_FAULT_DURATION_SECONDS}, got {}",
                when.duration_seconds
            )));
        }
        when.expires_at_ms = match when.duration_seconds {
            0 => 0,
            seconds => now_ms + u64::from(seconds) * 1000,
        };
    }
    farm_node_api::faults::from_proto(&faults, now_ms)
        .map_err(|message| Error::InvalidArgument(format!("faults.{message}")))?;
    Ok(faults)
}

/// `given`'s kinds replace those of `profile`; the others stay.
pub fn merge(profile: &mut FaultProfile, given: &FaultProfile) {
    macro_rules! replace {
        ($($kind:ident),*) => {$(
            if given.$kind.is_some() {
                profile.$kind.clone_from(&given.$kind);
            }
        )*};
    }
    replace!(
        latency, abort, hang, throughput, connection, rate_limit, health, readiness, partition
    );
}

/// The kinds a clear request names, checked; empty means every kind.
pub fn kinds(raw: &[i32]) -> Result<Vec<FaultKind>> {
    raw.iter()
        .map(|&kind| match FaultKind::try_from(kind) {
            Ok(FaultKind::Unspecified) | Err(_) => Err(Error::InvalidArgument(format!(
                "kinds holds {kind}, which is not a fault kind"
            ))),
            Ok(kind) => Ok(kind),
        })
        .collect()
}

/// Clears `kinds` from `profile` (every kind when empty).
pub fn clear(profile: &mut FaultProfile, kinds: &[FaultKind]) {
    if kinds.is_empty() {
        *profile = FaultProfile::default();
        return;
    }
    for kind in kinds {
        match kind {
            FaultKind::Unspecified => {}
            FaultKind::Latency => profile.latency = None,
            FaultKind::Abort => profile.abort = None,
            FaultKind::Hang => profile.hang = None,
            FaultKind::Throughput => profile.throughput = None,
            FaultKind::Connection => profile.connection = None,
            FaultKind::RateLimit => profile.rate_limit = None,
            FaultKind::Health => profile.health = None,
            FaultKind::Readiness => profile.readiness = None,
            FaultKind::Partition => profile.partition = None,
        }
    }
}

/// Drops the faults of `profile` whose time has passed at `now_ms`; returns whether any did,
/// and whether the partition was among them.
pub fn expire(profile: &mut FaultProfile, now_ms: u64) -> (bool, bool) {
    let over = |when: &Option<FaultWhen>| {
        when.as_ref()
            .is_some_and(|w| w.expires_at_ms != 0 && w.expires_at_ms <= now_ms)
    };
    let mut expired = false;
    macro_rules! drop_over {
        ($($kind:ident),*) => {$(
            if profile.$kind.as_ref().is_some_and(|f| over(&f.when)) {
                profile.$kind = None;
                expired = true;
            }
        )*};
    }
    drop_over!(
        latency, abort, hang, throughput, connection, rate_limit, health, readiness
    );
    let partition_over = profile.partition.as_ref().is_some_and(|f| over(&f.when));
    if partition_over {
        profile.partition = None;
    }
    (expired || partition_over, partition_over)
}

/// The servers `targets` chooses, in id order: by id (unknown ids refused together), by
/// status, or every server; then a random share of those, seeded.
pub fn select(registry: &Registry, targets: Option<&pb::FaultTargets>) -> Result<Vec<u32>> {
    let targets = targets.ok_or_else(|| {
        Error::InvalidArgument("targets is required: server_ids, status or all".into())
    })?;
    let by_status = targets.status != pb::ServerStatus::Unspecified as i32;
    let chosen = [!targets.server_ids.is_empty(), by_status, targets.all]
        .iter()
        .filter(|&&given| given)
        .count();
    if chosen != 1 {
        return Err(Error::InvalidArgument(
            "targets takes exactly one of server_ids, status and all".into(),
        ));
    }
    if !(targets.share_percent.is_finite() && (0.0..=100.0).contains(&targets.share_percent)) {
        return Err(Error::InvalidArgument(format!(
            "targets.share_percent must be 0 to 100, got {}",
            targets.share_percent
        )));
    }
    let ids: Vec<u32> = if !targets.server_ids.is_empty() {
        crate::targets::resolve(registry, &targets.server_ids, "targets.server_ids")?
            .into_iter()
            .map(|t| t.id)
            .collect()
    } else if by_status {
        let status = pb::ServerStatus::try_from(targets.status)
            .ok()
            .and_then(|s| Status::try_from(s).ok())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "targets.status {} is not a server status",
                    targets.status
                ))
            })?;
        let ids: Vec<u32> = registry.read(|entries| {
            entries
                .filter(|e| e.status == status)
                .map(|e| e.id)
                .collect()
        });
        if ids.is_empty() {
            return Err(Error::NotFound(format!(
                "targets.status: no server is {}",
                status.as_str()
            )));
        }
        ids
    } else {
        let ids = registry.ids();
        if ids.is_empty() {
            return Err(Error::InvalidArgument(
                "targets: the farm has no servers".into(),
            ));
        }
        ids
    };
    debug_assert!(ids.len() <= MAX_TARGETS.max(farm_proto::limits::MAX_SERVERS as usize));
    if targets.share_percent == 0.0 {
        return Ok(ids);
    }
    Ok(share(&ids, targets.share_percent, targets.share_seed))
}

/// `percent` of `ids` (at least one), chosen by `seed`: the same seed over the same ids
/// chooses the same ones. Returned in id order.
fn share(ids: &[u32], percent: f64, seed: u64) -> Vec<u32> {
    let wanted = ((ids.len() as f64 * percent / 100.0).round() as usize).clamp(1, ids.len());
    // Rank every id by a hash of (seed, id) and keep the lowest: no shared state, and an id's
    // fate does not depend on the order ids are listed in.
    let mut ranked: Vec<(u64, u32)> = ids
        .iter()
        .map(|&id| {
            (
                splitmix64(seed ^ u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                id,
            )
        })
        .collect();
    ranked.sort_unstable();
    let chosen: BTreeSet<u32> = ranked.into_iter().take(wanted).map(|(_, id)| id).collect();
    chosen.into_iter().collect()
}

/// A well-mixed 64-bit hash (splitmix64's finaliser).
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(delay_ms: u32, duration_seconds: u32) -> FaultProfile {
        FaultProfile {
            latency: Some(pb::LatencyFault {
                when: Some(FaultWhen {
                    duration_seconds,
                    ..FaultWhen::default()
                }),
                delay_ms,
                ..pb::LatencyFault::default()
            }),
            ..FaultProfile::default()
        }
    }

    #[test]
    fn a_set_is_checked_and_stamped_with_its_expiry() {
        let stamped = stamp(latency(200, 30), 1_000, false).unwrap();
        let when = stamped.latency.unwrap().when.unwrap();
        assert_eq!(when.expires_at_ms, 31_000);
        let err = stamp(latency(60_001, 0), 0, false).unwrap_err().to_string();
        assert!(err.starts_with("faults.latency.delay_ms"), "{err}");
        let err = stamp(latency(1, 86_401), 0, false).unwrap_err().to_string();
        assert!(
            err.starts_with("faults.latency.when.duration_seconds"),
            "{err}"
        );
        assert!(stamp(FaultProfile::default(), 0, false).is_err());
        let partition = FaultProfile {
            partition: Some(pb::PartitionFault::default()),
            ..FaultProfile::default()
        };
        let err = stamp(partition.clone(), 0, false).unwrap_err().to_string();
        assert!(err.contains("docker runtime"), "{err}");
        assert!(stamp(partition, 0, true).is_ok());
    }

    #[test]
    fn kinds_merge_clear_and_expire_one_by_one() {
        let mut profile = stamp(latency(200, 10), 0, false).unwrap();
        let abort = FaultProfile {
            abort: Some(pb::AbortFault::default()),
            ..FaultProfile::default()
        };
        merge(&mut profile, &stamp(abort, 0, false).unwrap());
        assert!(profile.latency.is_some() && profile.abort.is_some());
        assert_eq!(expire(&mut profile, 9_999), (false, false));
        assert_eq!(expire(&mut profile, 10_000), (true, false));
        assert!(profile.latency.is_none() && profile.abort.is_some());
        clear(&mut profile, &[FaultKind::Abort]);
        assert!(is_empty(&profile));
        assert!(kinds(&[0]).is_err() && kinds(&[99]).is_err());
    }

    #[test]
    fn a_share_is_the_same_for_the_same_seed_and_at_least_one() {
        let ids: Vec<u32> = (1..=100).collect();
        let a = share(&ids, 30.0, 7);
        assert_eq!(a.len(), 30);
        assert_eq!(a, share(&ids, 30.0, 7));
        assert_ne!(a, share(&ids, 30.0, 8));
        assert_eq!(share(&ids[..3], 1.0, 7).len(), 1);
    }
}
