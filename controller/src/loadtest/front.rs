//! Runs through a front: a load balancer (or any proxy) in front of the farm's servers.
//!
//! Every request goes to the front's one address; every node answer names its server in the
//! [`SERVER_HEADER`](farm_node_api::SERVER_HEADER) header, so each answer is attributed to the
//! server that gave it, and the run can say how the front spread its requests (shares against
//! equal or given weights, and a share per second) and, with a [`FailoverDrill`], how long the
//! front took to stop failing, to stop sending to a server whose health failed, and to send to
//! it again once it was back.
//!
//! # Where a front may be
//! Loopback (an IP literal or `localhost`), or an address inside a network the runtime names as
//! the farm's own (the docker runtime's bridge). Never a host name that must be resolved: the
//! farm does not aim load at addresses it cannot vouch for.
//!
//! # The drill's clock
//! The drill writes when it took the server down and when it had brought it back into the
//! [`FrontTally`] under the tally's lock, taking the time inside it. A worker's batch is flushed
//! after its records were answered, so a record answered after the action is always judged
//! against it; records are judged by their own answer times, not by when they were flushed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use farm_proto::limits::{
    MAX_BACKEND_WEIGHT, MAX_BACKEND_WEIGHTS, MAX_FAILOVER_DOWN_MS, MAX_FRONT_URL_LEN,
    MAX_SHARE_TIMELINE_CELLS,
};
use farm_proto::v1::{
    BackendCount, BackendResult, BackendWeight, FailoverAction, FailoverDrill, FailoverResult,
    FrontResult, ShareSecond,
};
use hdrhistogram::Histogram;

use super::tally::{Record, histogram, summary, to_micros};
use crate::error::{Error, Result};

/// Takes a server down for a failover drill and brings it back: the controller's own actions
/// (runtime or agent) and fault profiles.
#[tonic::async_trait]
pub trait Drills: Send + Sync + std::fmt::Debug {
    /// Takes server `id` down the way `action` says, for about `down_ms` milliseconds (it is
    /// brought back by [`Self::bring_back`]; the time only bounds what could outlive the drill).
    async fn take_down(&self, id: u32, action: FailoverAction, down_ms: u32) -> Result<(), String>;
    /// Brings server `id` back from `action`.
    async fn bring_back(&self, id: u32, action: FailoverAction) -> Result<(), String>;
}

/// A network the runtime counts as the farm's own: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The network's address.
    pub address: IpAddr,
    /// Its prefix length in bits.
    pub prefix: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) if self.prefix <= 32 => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) if self.prefix <= 128 => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A validated front: where requests go, what shares are expected, the drill if any.
#[derive(Debug, Clone)]
pub(super) struct Front {
    /// The URL as given, for the report.
    pub url: String,
    /// `host:port` to connect to and to name in the `Host` header.
    pub address: String,
    /// Expected share of each server, summing to 1.
    pub expected: BTreeMap<u32, f64>,
    /// The farm's servers when the run started: answers naming any other id are not
    /// attributed.
    pub farm: std::collections::BTreeSet<u32>,
    /// The failover drill.
    pub drill: Option<FailoverDrill>,
}

impl Front {
    /// Checks `url` (field `spec.front_url`): `http://HOST[:PORT]` with an optional `/`, HOST
    /// on loopback or inside one of `networks`.
    pub(super) fn address(url: &str, networks: &[Network]) -> Result<String> {
        let field = "spec.front_url";
        if url.len() > MAX_FRONT_URL_LEN {
            return Err(Error::InvalidArgument(format!(
                "{field} is longer than {MAX_FRONT_URL_LEN} bytes"
            )));
        }
        let uri: http::Uri = url.parse().map_err(|e| {
            Error::InvalidArgument(format!("{field} is not a URL ({e}), got {url:?}"))
        })?;
        if uri.scheme_str() != Some("http") {
            return Err(Error::InvalidArgument(format!(
                "{field} must start with http:// (the load engine speaks plain HTTP/1.1), got {url:?}"
            )));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(Error::InvalidArgument(format!(
                "{field} must not carry a path or query (give those in spec.path), got {url:?}"
            )));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| Error::InvalidArgument(format!("{field} has no host, got {url:?}")))?;
        if authority.as_str().contains('@') {
            return Err(Error::InvalidArgument(format!(
                "{field} must not carry credentials, got {url:?}"
            )));
        }
        let host = authority.host();
        let ip = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::from([127, 0, 0, 1])
        } else {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map_err(|_| {
                    Error::InvalidArgument(format!(
                        "{field}: the host must be an IP address or localhost (names are not resolved), got {host:?}"
                    ))
                })?
        };
        if !ip.is_loopback() && !networks.iter().any(|n| n.contains(ip)) {
            return Err(Error::InvalidArgument(format!(
                "{field}: {ip} is neither on this machine's loopback nor on the farm's own network; the farm sends load only to itself"
            )));
        }
        let port = authority.port_u16().unwrap_or(80);
        if port == 0 {
            return Err(Error::InvalidArgument(format!(
                "{field}: port 0 cannot be reached"
            )));
        }
        Ok(match ip {
            IpAddr::V4(v4) => format!("{v4}:{port}"),
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        })
    }

    /// Expected shares from `weights` (field `spec.weights`), each naming a server of `farm`;
    /// equal over `farm` when `weights` is empty.
    pub(super) fn expected(weights: &[BackendWeight], farm: &[u32]) -> Result<BTreeMap<u32, f64>> {
        if weights.len() > MAX_BACKEND_WEIGHTS {
            return Err(Error::InvalidArgument(format!(
                "spec.weights lists {} servers; at most {MAX_BACKEND_WEIGHTS}",
                weights.len()
            )));
        }
        let mut given = BTreeMap::new();
        for (i, w) in weights.iter().enumerate() {
            if !farm.contains(&w.server_id) {
                return Err(Error::InvalidArgument(format!(
                    "spec.weights[{i}].server_id: server {} is not part of this farm",
                    w.server_id
                )));
            }
            if w.weight == 0 || w.weight > MAX_BACKEND_WEIGHT {
                return Err(Error::InvalidArgument(format!(
                    "spec.weights[{i}].weight must be 1 to {MAX_BACKEND_WEIGHT}, got {}",
                    w.weight
                )));
            }
            if given.insert(w.server_id, w.weight).is_some() {
                return Err(Error::InvalidArgument(format!(
                    "spec.weights[{i}].server_id: server {} is named twice",
                    w.server_id
                )));
            }
        }
        if given.is_empty() {
            given = farm.iter().map(|&id| (id, 1)).collect();
        }
        let total: u32 = given.values().sum();
        Ok(given
            .into_iter()
            .map(|(id, w)| (id, f64::from(w) / f64::from(total.max(1))))
            .collect())
    }

    /// Checks `drill` (field `spec.failover`) against a run of `duration` on `farm`.
    pub(super) fn drill(drill: &FailoverDrill, duration: Duration, farm: &[u32]) -> Result<()> {
        let field = "spec.failover";
        if !farm.contains(&drill.server_id) {
            return Err(Error::InvalidArgument(format!(
                "{field}.server_id: server {} is not part of this farm",
                drill.server_id
            )));
        }
        match FailoverAction::try_from(drill.action) {
            Ok(FailoverAction::Unspecified) | Err(_) => {
                return Err(Error::InvalidArgument(format!(
                    "{field}.action must be KILL, STOP, PAUSE or HEALTH, got {}",
                    drill.action
                )));
            }
            Ok(_) => {}
        }
        if drill.down_ms == 0 || drill.down_ms > MAX_FAILOVER_DOWN_MS {
            return Err(Error::InvalidArgument(format!(
                "{field}.down_ms must be 1 to {MAX_FAILOVER_DOWN_MS}, got {}",
                drill.down_ms
            )));
        }
        let end = u64::from(drill.at_ms) + u64::from(drill.down_ms);
        let run_ms = duration.as_millis();
        if u128::from(end) >= run_ms {
            return Err(Error::InvalidArgument(format!(
                "{field}: at_ms + down_ms ({end} ms) must fall within the run ({run_ms} ms), so that the server's return is measured"
            )));
        }
        Ok(())
    }
}

/// Brings the drill's server down at its time and back after its `down_ms`, writing both
/// moments into `tally`; brings it back at once if the run is cancelled first.
pub(super) async fn run_drill(
    drill: FailoverDrill,
    drills: Arc<dyn Drills>,
    run: Arc<super::worker::Run>,
) {
    let action = FailoverAction::try_from(drill.action).unwrap_or(FailoverAction::Unspecified);
    let at = run.started + Duration::from_millis(u64::from(drill.at_ms));
    tokio::select! {
        () = run.cancel.cancelled() => return,
        () = tokio::time::sleep_until(at) => {}
    }
    let taken_at = {
        let mut tally = super::lock(&run.tally);
        let now = run.started.elapsed();
        if let Some(front) = tally.front.as_mut() {
            front.drill.action_at = Some(now);
        }
        now
    };
    if let Err(e) = drills
        .take_down(drill.server_id, action, drill.down_ms)
        .await
    {
        // Nothing was done, so there is nothing to undo (a server the user had stopped stays
        // stopped).
        tracing::warn!(server = drill.server_id, error = %e, "Failover drill could not take the server down.");
        if let Some(front) = super::lock(&run.tally).front.as_mut() {
            front.drill.error = format!("taking it down: {e}");
        }
        return;
    }
    let back = run.started + taken_at + Duration::from_millis(u64::from(drill.down_ms));
    tokio::select! {
        () = run.cancel.cancelled() => {}
        () = tokio::time::sleep_until(back) => {}
    }
    let result = drills.bring_back(drill.server_id, action).await;
    let mut tally = super::lock(&run.tally);
    let now = run.started.elapsed();
    if let Some(front) = tally.front.as_mut() {
        match result {
            Ok(()) => front.drill.back_at = Some(now),
            Err(e) => {
                tracing::warn!(server = drill.server_id, error = %e, "Failover drill could not bring the server back.");
                let sep = if front.drill.error.is_empty() {
                    ""
                } else {
                    "; "
                };
                front.drill.error = format!("{}{sep}bringing it back: {e}", front.drill.error);
            }
        }
    }
}

/// One server's figures in a run through a front.
struct Backend {
    requests: u64,
    failures: u64,
    latency: Histogram<u64>,
}

/// One second of the run.
#[derive(Default)]
struct Second {
    requests: u64,
    failures: u64,
    unattributed: u64,
    backends: BTreeMap<u32, u64>,
}

/// What the drill saw.
#[derive(Default)]
pub(super) struct DrillTally {
    pub action_at: Option<Duration>,
    pub back_at: Option<Duration>,
    pub error: String,
    first_error: Option<Duration>,
    last_error: Option<Duration>,
    failed: u64,
    last_served: Option<Duration>,
    readmitted: Option<Duration>,
}

/// A run's figures by server, by second and for the drill.
pub(super) struct FrontTally {
    farm: std::collections::BTreeSet<u32>,
    backends: BTreeMap<u32, Backend>,
    unattributed: u64,
    timeline: BTreeMap<u32, Second>,
    cells: usize,
    truncated: bool,
    drill_server: Option<u32>,
    pub drill: DrillTally,
}

impl FrontTally {
    pub(super) fn new(front: &Front) -> Self {
        Self {
            farm: front.farm.clone(),
            backends: BTreeMap::new(),
            unattributed: 0,
            timeline: BTreeMap::new(),
            cells: 0,
            truncated: false,
            drill_server: front.drill.as_ref().map(|d| d.server_id),
            drill: DrillTally::default(),
        }
    }

    /// Adds one request; `failed` when it got no answer or a status of 500 or more.
    pub(super) fn record(&mut self, record: &Record, failed: bool) {
        let server = record
            .outcome
            .ok()
            .and_then(|a| a.server)
            .filter(|id| self.farm.contains(id));
        match server {
            Some(id) => {
                let backend = self.backends.entry(id).or_insert_with(|| Backend {
                    requests: 0,
                    failures: 0,
                    latency: histogram(2),
                });
                backend.requests += 1;
                backend.failures += u64::from(failed);
                backend.latency.saturating_record(to_micros(record.latency));
            }
            None => self.unattributed += 1,
        }
        self.count_second(record, server, failed);
        self.judge_drill(record, server, failed);
    }

    fn count_second(&mut self, record: &Record, server: Option<u32>, failed: bool) {
        if self.truncated {
            return;
        }
        let index = u32::try_from(record.at.as_secs()).unwrap_or(u32::MAX);
        if !self.timeline.contains_key(&index) && self.cells >= MAX_SHARE_TIMELINE_CELLS {
            self.truncated = true;
            return;
        }
        let second = self.timeline.entry(index).or_insert_with(|| {
            self.cells += 1;
            Second::default()
        });
        second.requests += 1;
        second.failures += u64::from(failed);
        match server {
            Some(id) => {
                if !second.backends.contains_key(&id) {
                    if self.cells >= MAX_SHARE_TIMELINE_CELLS {
                        self.truncated = true;
                        return;
                    }
                    self.cells += 1;
                }
                *second.backends.entry(id).or_default() += 1;
            }
            None => second.unattributed += 1,
        }
    }

    /// Failures count by when they were seen (answered or given up on); the drill server's
    /// answers by when their requests were sent, which is when the front chose it: a request
    /// held by a paused server and answered after its return was still sent to it before.
    fn judge_drill(&mut self, record: &Record, server: Option<u32>, failed: bool) {
        let drill = &mut self.drill;
        let Some(action_at) = drill.action_at else {
            return;
        };
        let down = |t: Duration| t >= action_at && drill.back_at.is_none_or(|back| t < back);
        let seen = record.at;
        if failed && down(seen) {
            drill.failed += 1;
            drill.first_error = Some(drill.first_error.map_or(seen, |t| t.min(seen)));
            drill.last_error = Some(drill.last_error.map_or(seen, |t| t.max(seen)));
        }
        if server.is_none() || server != self.drill_server {
            return;
        }
        let sent = record.at.saturating_sub(record.uncorrected);
        if down(sent) {
            drill.last_served = Some(drill.last_served.map_or(sent, |t| t.max(sent)));
        } else if drill.back_at.is_some_and(|back| sent >= back) {
            drill.readmitted = Some(drill.readmitted.map_or(sent, |t| t.min(sent)));
        }
    }

    /// The figures so far, against `front`'s expected shares.
    pub(super) fn result(&self, front: &Front) -> FrontResult {
        let attributed: u64 = self.backends.values().map(|b| b.requests).sum();
        let share = |requests: u64| {
            if attributed == 0 {
                0.0
            } else {
                requests as f64 / attributed as f64
            }
        };
        let mut ids: Vec<u32> = front.expected.keys().copied().collect();
        ids.extend(self.backends.keys().copied());
        ids.sort_unstable();
        ids.dedup();
        let backends: Vec<BackendResult> = ids
            .iter()
            .map(|id| {
                let backend = self.backends.get(id);
                BackendResult {
                    server_id: *id,
                    requests: backend.map_or(0, |b| b.requests),
                    failures: backend.map_or(0, |b| b.failures),
                    latency: Some(backend.map_or_else(Default::default, |b| summary(&b.latency))),
                    share: share(backend.map_or(0, |b| b.requests)),
                    expected_share: front.expected.get(id).copied().unwrap_or(0.0),
                }
            })
            .collect();
        let ratios: Vec<f64> = backends
            .iter()
            .filter(|b| b.expected_share > 0.0)
            .map(|b| b.share / b.expected_share)
            .collect();
        let (low, high) = ratios.iter().fold((f64::INFINITY, 0.0_f64), |(lo, hi), r| {
            (lo.min(*r), hi.max(*r))
        });
        let max_min_ratio = if attributed == 0 || ratios.is_empty() || low <= 0.0 {
            0.0
        } else {
            high / low
        };
        let max_deviation = ratios.iter().fold(0.0_f64, |m, r| m.max((r - 1.0).abs()));
        FrontResult {
            url: front.url.clone(),
            backends,
            unattributed: self.unattributed,
            max_min_ratio,
            max_deviation: if attributed == 0 { 0.0 } else { max_deviation },
            timeline: self
                .timeline
                .iter()
                .map(|(&second, s)| ShareSecond {
                    second,
                    requests: s.requests,
                    failures: s.failures,
                    unattributed: s.unattributed,
                    backends: s
                        .backends
                        .iter()
                        .map(|(&server_id, &requests)| BackendCount {
                            server_id,
                            requests,
                        })
                        .collect(),
                })
                .collect(),
            timeline_truncated: self.truncated,
            failover: front.drill.map(|drill| self.failover(drill)),
        }
    }

    fn failover(&self, drill: FailoverDrill) -> FailoverResult {
        let d = &self.drill;
        let ms = |t: Duration| t.as_secs_f64() * 1000.0;
        let since =
            |t: Option<Duration>, from: Option<Duration>| Some(ms(t?.saturating_sub(from?)));
        FailoverResult {
            drill: Some(drill),
            action_at_ms: d.action_at.map(ms),
            back_at_ms: d.back_at.map(ms),
            error: d.error.clone(),
            first_error_ms: since(d.first_error, d.action_at),
            failed_requests: d.failed,
            failover_ms: since(d.last_error, d.action_at),
            detection_ms: since(d.last_served, d.action_at),
            readmission_ms: since(d.readmitted, d.back_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::tally::Answer;

    #[test]
    fn a_front_must_be_on_loopback_or_the_farms_network() {
        let farm_net = [Network {
            address: "172.30.0.0".parse().unwrap(),
            prefix: 16,
        }];
        assert_eq!(
            Front::address("http://127.0.0.1:8080", &[]).unwrap(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            Front::address("http://localhost:81/", &[]).unwrap(),
            "127.0.0.1:81"
        );
        assert_eq!(Front::address("http://[::1]", &[]).unwrap(), "[::1]:80");
        assert_eq!(
            Front::address("http://172.30.4.5:9000", &farm_net).unwrap(),
            "172.30.4.5:9000"
        );
        for (bad, why) in [
            ("http://10.1.2.3:80", "farm's own network"),
            ("http://172.31.0.1:80", "farm's own network"),
            ("http://example.com:80", "IP address"),
            ("https://127.0.0.1:443", "http://"),
            ("http://127.0.0.1:8080/x", "path"),
            ("http://u:p@127.0.0.1:8080", "credentials"),
            ("http://127.0.0.1:0", "port 0"),
            ("not a url", "not a URL"),
        ] {
            let e = Front::address(bad, &farm_net).unwrap_err().to_string();
            assert!(
                e.contains("spec.front_url") && e.contains(why),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn weights_name_servers_of_the_farm_and_default_to_equal() {
        let equal = Front::expected(&[], &[1, 2, 4]).unwrap();
        assert_eq!(equal.len(), 3);
        assert!(equal.values().all(|s| (s - 1.0 / 3.0).abs() < 1e-12));
        let w = |server_id, weight| BackendWeight { server_id, weight };
        let given = Front::expected(&[w(1, 3), w(2, 1)], &[1, 2, 4]).unwrap();
        assert_eq!(given[&1], 0.75);
        assert!(!given.contains_key(&4));
        for (weights, why) in [
            (vec![w(9, 1)], "weights[0].server_id"),
            (vec![w(1, 0)], "weights[0].weight"),
            (vec![w(1, 1), w(1, 2)], "named twice"),
        ] {
            let e = Front::expected(&weights, &[1, 2]).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn a_drill_must_end_within_the_run() {
        let drill = |action: FailoverAction, at_ms, down_ms| FailoverDrill {
            server_id: 2,
            action: action as i32,
            at_ms,
            down_ms,
        };
        let run = Duration::from_secs(10);
        assert!(Front::drill(&drill(FailoverAction::Kill, 2000, 3000), run, &[1, 2]).is_ok());
        for (bad, why) in [
            (drill(FailoverAction::Kill, 8000, 3000), "within the run"),
            (drill(FailoverAction::Kill, 1000, 0), "down_ms"),
            (drill(FailoverAction::Unspecified, 1000, 10), "action"),
        ] {
            let e = Front::drill(&bad, run, &[1, 2]).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        let other = FailoverDrill {
            server_id: 7,
            ..drill(FailoverAction::Stop, 1, 1)
        };
        assert!(
            Front::drill(&other, run, &[1, 2])
                .unwrap_err()
                .to_string()
                .contains("server_id")
        );
    }

    fn record(at_ms: u64, outcome: super::super::tally::Outcome) -> Record {
        Record {
            target: 0,
            outcome,
            latency: Duration::from_millis(2),
            uncorrected: Duration::from_millis(2),
            at: Duration::from_millis(at_ms),
        }
    }

    fn answer(status: u16, server: Option<u32>) -> super::super::tally::Outcome {
        Ok(Answer { status, server })
    }

    #[test]
    fn shares_fairness_and_the_drill_are_judged_from_answer_times() {
        let front = Front {
            url: "http://127.0.0.1:1".into(),
            address: "127.0.0.1:1".into(),
            expected: Front::expected(&[], &[1, 2]).unwrap(),
            farm: [1, 2].into(),
            drill: Some(FailoverDrill {
                server_id: 2,
                action: FailoverAction::Health as i32,
                at_ms: 1000,
                down_ms: 2000,
            }),
        };
        let mut tally = FrontTally::new(&front);
        // Before the drill: an even spread.
        for t in 0..10 {
            tally.record(
                &record(t * 10, answer(200, Some(1 + (t % 2) as u32))),
                false,
            );
        }
        tally.drill.action_at = Some(Duration::from_millis(1000));
        // After it: the front keeps sending to 2 for 300 ms, one request fails at 1,100 ms.
        tally.record(&record(1300, answer(200, Some(2))), false);
        tally.record(&record(1100, Err("io")), true);
        tally.record(&record(1500, answer(200, Some(1))), false);
        tally.drill.back_at = Some(Duration::from_millis(3000));
        tally.record(&record(3800, answer(200, Some(2))), false);
        tally.record(&record(3400, answer(200, Some(2))), false);
        tally.record(&record(3500, answer(502, None)), true);
        let result = tally.result(&front);
        assert_eq!(result.unattributed, 2);
        assert_eq!(result.backends.len(), 2);
        assert_eq!(result.backends[0].requests, 6);
        assert_eq!(result.backends[1].requests, 8);
        assert!((result.max_min_ratio - 8.0 / 6.0).abs() < 1e-9);
        let failover = result.failover.unwrap();
        assert_eq!(failover.failed_requests, 1);
        assert_eq!(failover.first_error_ms, Some(100.0));
        assert_eq!(failover.failover_ms, Some(100.0));
        // Judged by send times: each answer took 2 ms.
        assert_eq!(failover.detection_ms, Some(298.0));
        assert_eq!(failover.readmission_ms, Some(398.0));
        let seconds: Vec<u32> = result.timeline.iter().map(|s| s.second).collect();
        assert_eq!(seconds, [0, 1, 3]);
        assert_eq!(result.timeline[2].unattributed, 1);
    }

    #[test]
    fn a_server_that_got_nothing_makes_the_run_unfair() {
        let front = Front {
            url: String::new(),
            address: String::new(),
            expected: Front::expected(&[], &[1, 2]).unwrap(),
            farm: [1, 2].into(),
            drill: None,
        };
        let mut tally = FrontTally::new(&front);
        tally.record(&record(5, answer(200, Some(1))), false);
        let result = tally.result(&front);
        assert_eq!(result.max_min_ratio, 0.0);
        assert_eq!(result.max_deviation, 1.0);
        assert!(result.failover.is_none());
    }
}
