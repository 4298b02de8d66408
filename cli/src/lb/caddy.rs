//! The Caddyfile (tested with caddy 2.6, Debian 12's): plain HTTP on the listen address, the
//! admin API on a unix socket in the run directory (so that caddys run side by side and
//! `caddy reload` finds it), active `/health` checks plus passive ones. Caddy 2.6 has no
//! weighted policy, so `--weight` is refused for it before anything is written.

use std::fmt::Write as _;

use super::{Backend, Balance, RETRIES, Settings, timeouts};

/// The admin API's socket, in the run directory.
pub(super) const ADMIN_SOCKET: &str = "admin.sock";

/// The Caddyfile for `backends`.
pub(super) fn render(settings: &Settings, backends: &[Backend]) -> String {
    let run = |name: &str| settings.run_path(name);
    let mut text = settings.header(
        backends.len(),
        &format!(
            "caddy run --config FILE --adapter caddyfile --pidfile {}",
            run("caddy.pid")
        ),
        "caddy reload --config FILE --adapter caddyfile",
    );
    let policy = match settings.balance {
        Balance::RoundRobin => "round_robin",
        Balance::LeastConn => "least_conn",
    };
    let bind = settings.listen.ip();
    let _ = write!(
        text,
        // No blank line after the header: `caddy fmt` would take it out, and caddy warns about
        // a file `caddy fmt` would change.
        "{{
\t# Not localhost:2019: caddys run side by side, and `caddy reload` finds the socket here.
\tadmin unix/{admin}
\t# Plain HTTP: no certificates to get.
\tauto_https off
\tstorage file_system {{
\t\troot {data}
\t}}
\tlog {{
\t\toutput file {log}
\t}}
}}

http://:{port} {{
\tbind {bind}
\tlog {{
\t\toutput file {access}
\t}}
\treverse_proxy {{
",
        admin = run(ADMIN_SOCKET),
        data = run("data"),
        log = run("caddy.log"),
        access = run("access.log"),
        port = settings.listen.port(),
    );
    if backends.is_empty() {
        text.push_str("\t\t# The farm has no server with an address yet: every request fails.\n");
    }
    for backend in backends {
        let _ = writeln!(text, "\t\tto {} # {}", backend.address, backend.name());
    }
    let interval = settings.check_interval_ms;
    let _ = write!(
        text,
        "\t\tlb_policy {policy}
\t\t# A request whose connection failed is tried on another server, {RETRIES} more times at
\t\t# most; one that reached its node is tried again only if it is a GET, so a POST is never
\t\t# served twice.
\t\tlb_retries {RETRIES}
\t\thealth_uri /health
\t\thealth_interval {interval}ms
\t\thealth_timeout {check_timeout}ms
\t\thealth_status 200
\t\t# Marked as a probe, a check stays out of the node's request counters.
\t\thealth_headers {{
\t\t\tx-farm-probe caddy
\t\t}}
\t\t# Passive checks too: {fall} failed requests within {fail_ms} ms take a server out.
\t\tmax_fails {fall}
\t\tfail_duration {fail_ms}ms
\t\ttransport http {{
\t\t\tdial_timeout {connect}ms
\t\t\tresponse_header_timeout {server}s
\t\t\t# Closed before the node's own idle timeout would close them under a request.
\t\t\tkeepalive {upstream_idle}s
\t\t}}
\t}}
}}
",
        check_timeout = settings.check_timeout_ms(),
        fall = settings.fall,
        fail_ms = interval * settings.fall,
        connect = timeouts::CONNECT_MS,
        server = timeouts::SERVER_S,
        upstream_idle = timeouts::UPSTREAM_IDLE_S,
    );
    text
}

#[cfg(test)]
mod tests {
    use super::super::Kind;
    use super::super::tests::{settings, two_backends};
    use super::*;

    #[test]
    fn a_caddyfile_with_checks_and_its_files_in_the_run_directory() {
        let mut settings = settings(Kind::Caddy);
        settings.listen = "[::1]:9000".parse().unwrap();
        settings.balance = Balance::LeastConn;
        let text = render(&settings, &two_backends());
        for line in [
            "\tadmin unix//run/lb/admin.sock\n",
            "\t\troot /run/lb/data\n",
            "http://:9000 {\n",
            "\tbind ::1\n",
            "\t\tto 127.0.0.1:8001 # server-1\n",
            "\t\tto [::1]:8002 # server-2\n",
            "\t\tlb_policy least_conn\n",
            "\t\thealth_uri /health\n",
            "\t\thealth_interval 1000ms\n",
            "\t\tfail_duration 3000ms\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }
}
