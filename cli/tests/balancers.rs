//! Real load balancers from Debian in front of a real farm, configured by `farm lb config`:
//! haproxy and nginx spread requests evenly over every server (counted by the node's
//! `x-farm-server` header) and follow the farm when it scales, through `--watch`; caddy's
//! Caddyfile passes `caddy validate`; bad input is refused with the flag named and nothing
//! written. A missing balancer fails its test with the command that installs it.
//!
//! The load engine runs through each balancer too (a run through a front): its per-server
//! shares agree with the count, and failover drills (a server killed, a server whose health
//! fails while it serves) are timed: for haproxy, with fast checks, the times agree with its
//! own stats (`show stat`: checks down, downtime) within their one-second resolution; for
//! nginx, whose checks are passive, they are reported as measured.
//!
//! A balancer is a heavy fixture: each test that runs one starts it once and runs every
//! step against it in order, on one farm. Steps that need a balancer belong in its test.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::balancer::{
    Balancer, Kind, ScratchDir, generate, require, run_ok, servers_named, spread,
};
use common::{Farm, eventually, farm_bin, run_to_end};
use farm_proto::v1::{
    FailoverAction, FailoverDrill, FailoverResult, FrontResult, LoadTestSpec, ScaleFarmRequest,
};

/// The farm a balancer starts in front of.
const SERVERS: u32 = 10;
/// What the farm is scaled to while `--watch` follows it.
const SCALED: u32 = 12;
/// Requests per server in a measured spread: 2,000 over ten servers.
const REQUESTS_PER_SERVER: u64 = 200;
/// Concurrent clients sending them, each request on a connection of its own.
const CLIENTS: u64 = 4;
/// How far each server's share may be from an equal one under round robin.
const TOLERANCE: f64 = 0.05;
/// How long the farm may take to turn healthy.
const FARM_LIMIT: Duration = Duration::from_secs(60);
/// How long `--watch` may take to see new servers, rewrite the file and reload (it polls
/// every second; the new servers must start first).
const FOLLOW_LIMIT: Duration = Duration::from_secs(30);

/// haproxy's checks in the failover steps: every 200 ms, down after 2 failures, up after 2
/// successes, so detection takes about 0.4 s.
const FAST_CHECKS: [&str; 6] = ["--check-interval-ms", "200", "--fall", "2", "--rise", "2"];
/// A drill's run: this long, at this rate; the server goes down at 2 s for 3 s.
const DRILL_RUN_SECONDS: u32 = 8;
const DRILL_RATE: f64 = 400.0;
const DRILL_AT_MS: u32 = 2_000;
const DRILL_DOWN_MS: u32 = 3_000;

/// A run of the load engine through `balancer`: `spec` with the front filled in.
async fn through(farm: &Farm, balancer: &Balancer, spec: LoadTestSpec) -> FrontResult {
    let mut client = farm.client().await;
    let result = run_to_end(
        &mut client,
        LoadTestSpec {
            front_url: format!("http://{}", balancer.listen),
            ..spec
        },
    )
    .await;
    result
        .front
        .expect("a run through a front reports its shares")
}

/// The engine's own shares through `balancer`: every server within the tolerance of an equal
/// share, and nothing the balancer answered by itself.
async fn engine_shares_are_even(farm: &Farm, balancer: &Balancer, servers: u32) {
    let front = through(
        farm,
        balancer,
        LoadTestSpec {
            concurrency: 8,
            total_requests: REQUESTS_PER_SERVER * u64::from(servers) * 2,
            ..LoadTestSpec::default()
        },
    )
    .await;
    let shares: Vec<(u32, u64)> = front
        .backends
        .iter()
        .map(|b| (b.server_id, b.requests))
        .collect();
    eprintln!(
        "{} through the load engine: max/min {:.3}, largest deviation {:.1} %, shares {shares:?}",
        balancer.kind.name(),
        front.max_min_ratio,
        front.max_deviation * 100.0
    );
    assert_eq!(front.unattributed, 0, "{front:?}");
    assert_eq!(front.backends.len(), servers as usize, "{shares:?}");
    assert!(
        front.max_deviation <= TOLERANCE,
        "{} spread: largest deviation {:.3}: {shares:?}",
        balancer.kind.name(),
        front.max_deviation
    );
}

/// A drill on server `server` under load through `balancer`; the figures, printed.
async fn drill(
    farm: &Farm,
    balancer: &Balancer,
    server: u32,
    action: FailoverAction,
) -> FailoverResult {
    let front = through(
        farm,
        balancer,
        LoadTestSpec {
            rate_per_second: DRILL_RATE,
            concurrency: 32,
            duration_seconds: DRILL_RUN_SECONDS,
            timeout_ms: 2_000,
            failover: Some(FailoverDrill {
                server_id: server,
                action: action as i32,
                at_ms: DRILL_AT_MS,
                down_ms: DRILL_DOWN_MS,
            }),
            ..LoadTestSpec::default()
        },
    )
    .await;
    let drill = front.failover.expect("the drill's figures");
    let ms = |t: Option<f64>| t.map_or_else(|| "not seen".into(), |t| format!("{t:.0} ms"));
    eprintln!(
        "{} {action:?} of server {server}: failed {}, first error {}, failover {}, detection {}, re-admission {} (down at {}, back at {})",
        balancer.kind.name(),
        drill.failed_requests,
        ms(drill.first_error_ms),
        ms(drill.failover_ms),
        ms(drill.detection_ms),
        ms(drill.readmission_ms),
        ms(drill.action_at_ms),
        ms(drill.back_at_ms),
    );
    assert!(drill.error.is_empty(), "{drill:?}");
    assert!(
        drill.action_at_ms.is_some() && drill.back_at_ms.is_some(),
        "{drill:?}"
    );
    drill
}

/// How long, by the drill's figures, haproxy should have counted `server` down: from its
/// check failing (the action plus `detection`) to its being admitted again.
fn expected_downtime_s(drill: &FailoverResult, detection_ms: f64) -> f64 {
    let action = drill.action_at_ms.unwrap();
    let back = drill.back_at_ms.unwrap();
    let readmitted = back + drill.readmission_ms.expect("re-admitted within the run");
    (readmitted - action - detection_ms) / 1000.0
}

/// haproxy's own stats agree with a drill on `server`: one more check-down than `before`
/// (checks down, seconds down), and the seconds it counted down within `tolerance` of the
/// drill's figures, `detection_ms` being how long haproxy took to notice.
fn downtime_agrees(
    stats: &std::collections::BTreeMap<u32, common::balancer::StatRow>,
    server: u32,
    before: (u64, u64),
    drill: &FailoverResult,
    detection_ms: f64,
    tolerance: f64,
) {
    let (downs, downtime) = (
        stats[&server].number("chkdown"),
        stats[&server].number("downtime"),
    );
    assert_eq!(
        downs,
        before.0 + 1,
        "haproxy took server {server} down once"
    );
    let counted = (downtime - before.1) as f64;
    let expected = expected_downtime_s(drill, detection_ms);
    eprintln!(
        "haproxy counted server {server} down {counted} s; the drill's figures say {expected:.2} s"
    );
    assert!(
        (counted - expected).abs() <= tolerance,
        "haproxy's downtime {counted} s against the drill's {expected:.2} s: {drill:?}"
    );
}

/// `farm lb config ARGS` as a user types it, with no FARM_CONTROLLER from the environment.
fn farm_lb_config(args: &[&str], dir: &Path) -> Output {
    Command::new(farm_bin())
        .args(["lb", "config"])
        .args(args)
        .env_remove("FARM_CONTROLLER")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("farm lb config runs")
}

/// Asks the farm for `servers` servers.
async fn scale(farm: &Farm, servers: u32) {
    let answer = farm
        .client()
        .await
        .scale_farm(farm.authorized(ScaleFarmRequest { servers }))
        .await
        .expect("ScaleFarm answers")
        .into_inner();
    assert_eq!(answer.servers, servers, "{answer:?}");
}

/// Configs with every option the balancer's own checker can see (weights, least-conn, the
/// shortest interval, IPv6) pass it.
fn variants_pass_the_checker(farm: &Farm, kind: Kind) {
    let program = require(kind.name());
    let scratch = ScratchDir::new(&format!("lb-variants-{}", kind.name()));
    let variants: [&[&str]; 2] = [
        &[],
        &[
            "--balance",
            "least-conn",
            "--weight",
            "1=5",
            "--weight",
            "10=256",
            "--check-interval-ms",
            "100",
            "--fall",
            "1",
            "--rise",
            "10",
            "--listen",
            "[::1]:8080",
        ],
    ];
    for (n, variant) in variants.iter().enumerate() {
        let config = scratch.join(&format!("variant-{n}.conf"));
        let config_text = config.display().to_string();
        let mut args = vec!["--out", &config_text];
        args.extend_from_slice(variant);
        let output = generate(farm, kind, &args);
        assert!(
            output.status.success(),
            "{variant:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let written = std::fs::read_to_string(&config).unwrap();
        assert_eq!(
            servers_named(&written),
            (1..=SERVERS).collect::<BTreeSet<_>>(),
            "{written}"
        );
        match kind {
            Kind::Haproxy => run_ok(&program, &["-c", "-f", &config_text], &[]),
            Kind::Nginx => run_ok(&program, &["-t", "-c", &config_text], &[]),
            Kind::Caddy => unreachable!("caddy has a test of its own"),
        };
    }
}

/// Round robin through `balancer`: [`REQUESTS_PER_SERVER`] per server of `servers`, each on a
/// connection of its own, counted by the header; every share within [`TOLERANCE`] of equal.
async fn spread_is_even(balancer: &Balancer, servers: u32) -> common::balancer::Spread {
    let shares = spread(
        balancer.listen,
        "/",
        REQUESTS_PER_SERVER * u64::from(servers),
        CLIENTS,
    )
    .await;
    eprintln!("{}, {servers} servers: {shares}", balancer.kind.name());
    shares.assert_even(1..=servers, TOLERANCE);
    shares
}

/// SIGTERM ends `--watch` cleanly, and the balancer goes on.
fn watch_ends_cleanly(watcher: &mut common::balancer::Watcher, balancer: &mut Balancer) {
    let status = watcher.stop();
    assert!(status.success(), "{status}: {}", watcher.log_text());
    assert!(balancer.is_running());
}

/// Waits until the config names exactly `ids`.
async fn wait_for_config_naming(balancer: &Balancer, ids: BTreeSet<u32>) {
    eventually(FOLLOW_LIMIT, "the config to name every server", || {
        let named = servers_named(&balancer.config_text());
        let want = ids.clone();
        async move { (named == want).then_some(()) }
    })
    .await;
}

/// Sends small spreads until every one of `ids` has answered: new servers may need a
/// moment after a reload (their first checks, their node starting).
async fn wait_for_traffic_to(balancer: &Balancer, ids: std::ops::RangeInclusive<u32>) {
    let count = u64::from(*ids.end()) * 20;
    eventually(FOLLOW_LIMIT, "every server to get traffic", || {
        let ids = ids.clone();
        async move {
            spread(balancer.listen, "/", count, CLIENTS)
                .await
                .reaches(ids)
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_in_front_of_the_farm() {
    require("haproxy");
    let farm = Farm::up_with(SERVERS, &[], FARM_LIMIT);

    // Step 1: `haproxy -c` accepts the config with every option.
    variants_pass_the_checker(&farm, Kind::Haproxy);

    // Step 2: haproxy starts on the generated config (fast checks, for the drills) and its
    // checks find every server up.
    let mut balancer = Balancer::start(Kind::Haproxy, &farm, &FAST_CHECKS).await;
    let master = balancer.pid();
    assert_eq!(
        balancer.pid_file_pid(),
        Some(master),
        "the pid file is the master's"
    );
    eventually(FOLLOW_LIMIT, "haproxy to see every server up", || async {
        let stats = balancer.try_server_stats().await?;
        (stats.len() == SERVERS as usize && stats.values().all(|row| row.get("status") == "UP"))
            .then_some(())
    })
    .await;

    // Step 3: round robin: every server gets an equal share of 2,000 requests, and
    // haproxy's own counters saw them all.
    let before: u64 = balancer
        .server_stats()
        .await
        .values()
        .map(|r| r.number("stot"))
        .sum();
    let shares = spread_is_even(&balancer, SERVERS).await;
    let after: u64 = balancer
        .server_stats()
        .await
        .values()
        .map(|r| r.number("stot"))
        .sum();
    assert_eq!(
        after - before,
        shares.total,
        "haproxy's stot over the servers"
    );

    // Step 3b: the load engine through haproxy (keep-alive, 8 connections) sees the same
    // even spread, attributed by the header.
    engine_shares_are_even(&farm, &balancer, SERVERS).await;

    // Step 3c: server 3 killed under load and started again 3 s later. haproxy retries a
    // refused connection on another server, so few requests (if any) fail; its checks take
    // server 3 out and back in, and the time it counted server 3 down agrees with the drill's.
    let downs = |stats: &std::collections::BTreeMap<u32, common::balancer::StatRow>, id: u32| {
        (stats[&id].number("chkdown"), stats[&id].number("downtime"))
    };
    let stats = balancer.server_stats().await;
    let (kill_downs, kill_downtime) = downs(&stats, 3);
    let (health_downs, health_downtime) = downs(&stats, 4);
    let killed = drill(&farm, &balancer, 3, FailoverAction::Kill).await;
    assert!(
        killed.failover_ms.is_none_or(|t| t < 1500.0),
        "errors went on after haproxy's checks should have taken it out: {killed:?}"
    );
    assert!(
        killed.readmission_ms.is_some_and(|t| t < 2500.0),
        "{killed:?}"
    );
    // haproxy notices a refused check at once or within one interval: about 0 to 0.4 s.
    let stats = balancer.server_stats().await;
    downtime_agrees(&stats, 3, (kill_downs, kill_downtime), &killed, 200.0, 1.5);

    // Step 3d: server 4's /health fails for 3 s while it serves: nothing fails, haproxy stops
    // sending to it after two failed checks (detection), and sends again after two good ones.
    let failed_health = drill(&farm, &balancer, 4, FailoverAction::Health).await;
    assert_eq!(failed_health.failed_requests, 0, "{failed_health:?}");
    let detection = failed_health
        .detection_ms
        .expect("it served until detected");
    assert!(
        (150.0..1500.0).contains(&detection),
        "two failed checks 200 ms apart: {failed_health:?}"
    );
    assert!(
        failed_health.readmission_ms.is_some_and(|t| t < 1500.0),
        "{failed_health:?}"
    );
    let stats = balancer.server_stats().await;
    downtime_agrees(
        &stats,
        4,
        (health_downs, health_downtime),
        &failed_health,
        detection,
        1.0,
    );
    eventually(
        FOLLOW_LIMIT,
        "haproxy to see every server up again",
        || async {
            let stats = balancer.try_server_stats().await?;
            stats
                .values()
                .all(|row| row.get("status") == "UP")
                .then_some(())
        },
    )
    .await;

    // Step 4: `--watch` follows the farm to 12 servers: the file names them all and the
    // same master runs the new config: its stats list the new servers, new workers run
    // and the old ones are gone.
    let workers = balancer.workers();
    let mut watcher = balancer.watch(&farm, &[]).await;
    scale(&farm, SCALED).await;
    wait_for_config_naming(&balancer, (1..=SCALED).collect()).await;
    eventually(FOLLOW_LIMIT, "haproxy to run the new config", || async {
        let stats = balancer.try_server_stats().await?;
        (stats.len() == SCALED as usize).then_some(())
    })
    .await;
    balancer.wait_for_new_workers(&workers, FOLLOW_LIMIT).await;
    assert!(
        balancer.is_running(),
        "haproxy's master exited: {}",
        balancer.log()
    );
    assert_eq!(
        balancer.pid_file_pid(),
        Some(master),
        "a reload keeps the master"
    );
    assert!(
        watcher.log_text().contains(&format!(
            "reloaded haproxy: SIGUSR2 to haproxy's master, pid {master}"
        )),
        "{}",
        watcher.log_text()
    );

    // Step 5: the new servers get traffic, and the spread is even over all twelve.
    wait_for_traffic_to(&balancer, 1..=SCALED).await;
    spread_is_even(&balancer, SCALED).await;

    // Step 6: SIGTERM ends the watch cleanly; the balancer goes on.
    watch_ends_cleanly(&mut watcher, &mut balancer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_in_front_of_the_farm() {
    require("nginx");
    let farm = Farm::up_with(SERVERS, &[], FARM_LIMIT);

    // Step 1: `nginx -t` accepts the config with every option.
    variants_pass_the_checker(&farm, Kind::Nginx);

    // Step 2: nginx starts on the generated config, its files in the run directory.
    let mut balancer = Balancer::start(Kind::Nginx, &farm, &[]).await;
    let master = balancer.pid();
    assert_eq!(
        balancer.pid_file_pid(),
        Some(master),
        "the pid file is the master's"
    );
    assert!(balancer.run_dir.join("access.log").is_file());

    // Step 3: round robin: every server gets an equal share of 2,000 requests.
    spread_is_even(&balancer, SERVERS).await;

    // Step 3b: the load engine through nginx sees the same even spread.
    engine_shares_are_even(&farm, &balancer, SERVERS).await;

    // Step 3c: server 3 killed under load and started again. nginx's checks are passive: it
    // takes a server out when a request to it fails (and passes that request on), and tries
    // it again after `fail_timeout`. Measured and reported, and it must come back.
    let killed = drill(&farm, &balancer, 3, FailoverAction::Kill).await;
    assert!(killed.readmission_ms.is_some(), "{killed:?}");

    // Step 3d: server 4's /health fails while it serves: nginx never asks /health, so it
    // keeps sending to it the whole time: the drill's detection spans the time down.
    let failed_health = drill(&farm, &balancer, 4, FailoverAction::Health).await;
    assert_eq!(failed_health.failed_requests, 0, "{failed_health:?}");
    assert!(
        failed_health
            .detection_ms
            .is_some_and(|t| t > f64::from(DRILL_DOWN_MS) - 500.0),
        "{failed_health:?}"
    );

    // Step 4: `--watch` follows the farm to 12 servers: the file names them all, and
    // `nginx -s reload` reloads the same master: new workers, the old ones gone.
    let workers = balancer.workers();
    let mut watcher = balancer.watch(&farm, &[]).await;
    scale(&farm, SCALED).await;
    wait_for_config_naming(&balancer, (1..=SCALED).collect()).await;
    eventually(FOLLOW_LIMIT, "the watch to reload nginx", || {
        let log = watcher.log_text();
        async move { log.contains("reloaded nginx").then_some(()) }
    })
    .await;
    balancer.wait_for_new_workers(&workers, FOLLOW_LIMIT).await;
    assert!(
        balancer.is_running(),
        "nginx's master exited: {}",
        balancer.log()
    );
    assert_eq!(
        balancer.pid_file_pid(),
        Some(master),
        "a reload keeps the master"
    );

    // Step 5: the new servers get traffic, and the spread is even over all twelve.
    wait_for_traffic_to(&balancer, 1..=SCALED).await;
    spread_is_even(&balancer, SCALED).await;

    // Step 6: SIGTERM ends the watch cleanly; the balancer goes on.
    watch_ends_cleanly(&mut watcher, &mut balancer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_config_validates() {
    let caddy = require("caddy");
    let farm = Farm::up_with(3, &[], FARM_LIMIT);
    let scratch = ScratchDir::new("lb-caddy");
    // caddy keeps state under HOME and the XDG directories: the scratch directory's.
    let env: [(&str, &Path); 3] = [
        ("HOME", &scratch.0),
        ("XDG_CONFIG_HOME", &scratch.0),
        ("XDG_DATA_HOME", &scratch.0),
    ];

    // Without --out the config goes to standard output, its run directory in the current one.
    let output = farm_lb_config(
        &[
            "caddy",
            "--controller",
            &farm.controller_url(),
            "--balance",
            "least-conn",
        ],
        &scratch.0,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        servers_named(&printed),
        BTreeSet::from([1, 2, 3]),
        "{printed}"
    );
    assert!(printed.contains("lb_policy least_conn"), "{printed}");
    let run_dir = scratch.join("farm-lb-caddy.run");
    assert!(run_dir.is_dir(), "the default run directory is made");
    assert!(printed.contains(&format!("admin unix/{}/admin.sock", run_dir.display())));
    let printed_file = scratch.join("printed.Caddyfile");
    std::fs::write(&printed_file, &printed).unwrap();

    // With --out, round robin and the defaults.
    let config = scratch.join("Caddyfile");
    let config_text = config.display().to_string();
    let output = generate(&farm, Kind::Caddy, &["--out", &config_text]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains("health_uri /health"), "{written}");
    assert!(scratch.join("Caddyfile.run").is_dir());

    for file in [&printed_file, &config] {
        let file = file.display().to_string();
        run_ok(
            &caddy,
            &["validate", "--config", &file, "--adapter", "caddyfile"],
            &env,
        );
        // Formatted as `caddy fmt` would, which caddy otherwise warns about at every start.
        let formatted = run_ok(&caddy, &["fmt", &file], &env);
        assert_eq!(
            formatted,
            std::fs::read_to_string(&file).unwrap(),
            "caddy fmt changes {file}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused() {
    let farm = Farm::up_with(2, &[], FARM_LIMIT);
    let scratch = ScratchDir::new("lb-bad-input");
    let controller = farm.controller_url();
    let out = scratch.join("out.cfg").display().to_string();
    let spaced = scratch.join("run dir").display().to_string();
    let long = scratch.join(&"r".repeat(110)).display().to_string();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["squid"],
            &["invalid value 'squid'", "haproxy, nginx, caddy"],
        ),
        (
            &["haproxy", "--weight", "3=2"],
            &["--weight 3=2", "no server 3", "1-2"],
        ),
        (&["haproxy", "--weight", "1=0"], &["--weight", "1 to 256"]),
        (&["haproxy", "--weight", "1=257"], &["--weight", "1 to 256"]),
        (&["haproxy", "--weight", "1"], &["--weight", "ID=WEIGHT"]),
        (
            &["nginx", "--weight", "1=2", "--weight", "1=3"],
            &["--weight", "server 1", "twice"],
        ),
        (&["caddy", "--weight", "1=2"], &["--weight", "caddy"]),
        (
            &["haproxy", "--listen", "127.0.0.1:0"],
            &["--listen", "1 to 65535"],
        ),
        (
            &["nginx", "--listen", "localhost:8080"],
            &["--listen", "IP address"],
        ),
        (
            &["haproxy", "--check-interval-ms", "99"],
            &["--check-interval-ms", "100..=60000"],
        ),
        (
            &["haproxy", "--check-interval-ms", "60001"],
            &["--check-interval-ms", "100..=60000"],
        ),
        (&["haproxy", "--fall", "11"], &["--fall", "1..=10"]),
        (
            &["haproxy", "--balance", "random"],
            &["--balance", "round-robin, least-conn"],
        ),
        (&["haproxy", "--run-dir", &spaced], &["--run-dir", "' '"]),
        (
            &["caddy", "--run-dir", &long],
            &["--run-dir", "too long", "admin.sock"],
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["--controller", &controller, "--out", &out];
        all.splice(0..0, args.iter().copied());
        let output = farm_lb_config(&all, &scratch.0);
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted: {said}");
        for word in *expected {
            assert!(
                said.contains(word),
                "{args:?}: {word:?} missing from: {said}"
            );
        }
    }
    // Flags that cannot go together, and a controller that does not answer.
    let missing = scratch.join("no-such-dir/out.cfg").display().to_string();
    let other_cases: &[(&[&str], &[&str])] = &[
        (
            &["haproxy", "--controller", &controller, "--watch"],
            &["--out"],
        ),
        (
            &[
                "nginx",
                "--controller",
                &controller,
                "--out",
                &out,
                "--reload-command",
                "true",
            ],
            &["--watch"],
        ),
        (
            &["nginx", "--controller", &controller, "--out", &missing],
            &["--out", "does not exist"],
        ),
        (
            &[
                "haproxy",
                "--controller",
                "http://127.0.0.1:1",
                "--out",
                &out,
            ],
            &["cannot reach the controller"],
        ),
    ];
    for (args, expected) in other_cases {
        let output = farm_lb_config(args, &scratch.0);
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted: {said}");
        for word in *expected {
            assert!(
                said.contains(word),
                "{args:?}: {word:?} missing from: {said}"
            );
        }
    }
    // Nothing was written: no config, no run directory.
    let left: Vec<_> = std::fs::read_dir(&scratch.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "bad input left {left:?} behind");
}
