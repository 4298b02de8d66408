//! The haproxy config (tested with haproxy 2.6, Debian 12's): master-worker mode, so that a
//! reload is SIGUSR2 to a master whose pid never changes; an admin stats socket (`show stat`,
//! `disable server`, ...); active `/health` checks; every server by the farm's name for it.

use std::fmt::Write as _;

use super::{Backend, Balance, RETRIES, Settings, timeouts};

/// The master's pid, in the run directory.
pub(super) const PID_FILE: &str = "haproxy.pid";
/// The admin stats socket, in the run directory.
pub(super) const STATS_SOCKET: &str = "haproxy.sock";

/// The config for `backends`.
pub(super) fn render(settings: &Settings, backends: &[Backend]) -> String {
    let pid_file = settings.run_path(PID_FILE);
    let socket = settings.run_path(STATS_SOCKET);
    let mut text = settings.header(
        backends.len(),
        &format!(
            "haproxy -W -f FILE   (standard error holds its log: 2>>{}/haproxy.log)",
            settings.run_dir.display()
        ),
        &format!("kill -USR2 $(cat {pid_file})   (the master's pid stays the same)"),
    );
    let balance = match settings.balance {
        Balance::RoundRobin => "roundrobin",
        Balance::LeastConn => "leastconn",
    };
    let _ = write!(
        text,
        "
global
    # A master process runs the workers: SIGUSR2 to it (its pid is in the pidfile) starts new
    # workers on the file as it is now and lets the old ones finish their requests.
    master-worker
    pidfile {pid_file}
    # echo 'show stat' | socat stdio unix-connect:{socket}
    stats socket {socket} mode 600 level admin expose-fd listeners
    # haproxy cannot write a log file of its own: servers going down and up (notice and above)
    # go to its standard error, requests (info) nowhere.
    log stderr format raw local0 notice

defaults
    mode http
    log global
    option dontlognull
    option forwardfor
    # Nodes run on this machine and accept at once: one that takes longer is as good as down.
    timeout connect {connect}ms
    # An idle client (and the wait for a request's head): the node's own idle timeout.
    timeout client {client}s
    timeout http-request {client}s
    # Above the node's slowest route (/slow-endpoint, up to 30 s): only a hang fault runs into it.
    timeout server {server}s
    timeout check {check_timeout}ms
    # A request whose connection to a node fails (a node stopped or killed between two checks)
    # is tried again on another server rather than failed, {retries} times at most. haproxy
    # retries only when the connection failed, before the node saw the request, so no request
    # is ever served twice.
    retries {retries}
    option redispatch 1

frontend farm
    bind {listen}
    default_backend farm_servers

backend farm_servers
    balance {balance}
    option httpchk GET /health
    # Marked as a probe, a check stays out of the node's request counters, as the farm's own do.
    http-check send hdr x-farm-probe haproxy
    http-check expect status 200
    default-server check inter {interval}ms fall {fall} rise {rise}
",
        connect = timeouts::CONNECT_MS,
        client = timeouts::CLIENT_S,
        server = timeouts::SERVER_S,
        check_timeout = settings.check_timeout_ms(),
        retries = RETRIES,
        listen = settings.listen,
        interval = settings.check_interval_ms,
        fall = settings.fall,
        rise = settings.rise,
    );
    if backends.is_empty() {
        text.push_str(
            "    # The farm has no server with an address yet: every request gets a 503.\n",
        );
    }
    for backend in backends {
        let _ = write!(text, "    server {} {}", backend.name(), backend.address);
        if let Some(weight) = settings.weight(backend.id) {
            let _ = write!(text, " weight {weight}");
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::Kind;
    use super::super::tests::{settings, two_backends};
    use super::*;

    #[test]
    fn every_server_is_checked_on_health_with_its_weight() {
        let mut settings = settings(Kind::Haproxy);
        settings.weights.insert(2, 5);
        settings.balance = Balance::LeastConn;
        settings.check_interval_ms = 500;
        let text = render(&settings, &two_backends());
        for line in [
            "    master-worker\n",
            "    pidfile /run/lb/haproxy.pid\n",
            "    stats socket /run/lb/haproxy.sock mode 600 level admin expose-fd listeners\n",
            "    bind 127.0.0.1:8080\n",
            "    balance leastconn\n",
            "    option httpchk GET /health\n",
            "    http-check expect status 200\n",
            "    default-server check inter 500ms fall 3 rise 2\n",
            "    timeout check 500ms\n",
            "    retries 2\n",
            "    option redispatch 1\n",
            "    server server-1 127.0.0.1:8001\n",
            "    server server-2 [::1]:8002 weight 5\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(text.starts_with("# Generated by `farm lb config haproxy` for the farm at http://127.0.0.1:50051 (2 servers)."));
    }

    #[test]
    fn an_empty_farm_is_a_backend_without_servers() {
        let text = render(&settings(Kind::Haproxy), &[]);
        assert!(text.contains("balance roundrobin"));
        assert!(!text.contains("    server "), "{text}");
    }
}
