//! The nginx config (tested with nginx 1.22, Debian 12's): a whole `nginx.conf` that
//! `nginx -c FILE` runs as root or as any user, because every file nginx writes is in the run
//! directory. Open-source nginx has no active health checks: a server is taken out passively,
//! after `--fall` failed requests, for as long as that many check intervals.

use std::fmt::Write as _;

use super::{Backend, Balance, RETRIES, Settings, timeouts};

/// The master's pid, in the run directory.
pub(super) const PID_FILE: &str = "nginx.pid";

/// Idle keep-alive connections to the nodes that each worker keeps.
const KEEPALIVE_CONNECTIONS: u32 = 32;

/// The config for `backends`.
pub(super) fn render(settings: &Settings, backends: &[Backend]) -> String {
    let run = |name: &str| settings.run_path(name);
    let mut text = settings.header(
        backends.len(),
        "nginx -c FILE   (add -g 'daemon off;' to keep it in the foreground)",
        "nginx -s reload -c FILE",
    );
    let _ = write!(
        text,
        "
worker_processes auto;
pid {pid};
error_log {error_log} notice;

events {{
    # Each proxied request holds two connections, the client's and the node's.
    worker_connections 1024;
}}

http {{
    # Every file nginx writes is in the run directory, so that any user can run this config
    # (Debian's defaults are root's, under /var/lib/nginx and /var/log/nginx).
    client_body_temp_path {run_dir}/client_body_temp;
    proxy_temp_path {run_dir}/proxy_temp;
    fastcgi_temp_path {run_dir}/fastcgi_temp;
    uwsgi_temp_path {run_dir}/uwsgi_temp;
    scgi_temp_path {run_dir}/scgi_temp;
    # No temporary files at all: bodies stay in memory (up to the 1 MiB a body may have) and
    # large answers are passed on as they come, so the workers (nobody, when root starts
    # nginx) need to write nowhere.
    client_body_buffer_size 1m;
    proxy_max_temp_file_size 0;
    log_format farm '$remote_addr [$time_local] \"$request\" $status $body_bytes_sent '
                    'upstream=$upstream_addr upstream_status=$upstream_status $request_time';
    access_log {access_log} farm;
    keepalive_timeout {client}s;
",
        pid = run(PID_FILE),
        error_log = run("error.log"),
        access_log = run("access.log"),
        run_dir = settings.run_dir.display(),
        client = timeouts::CLIENT_S,
    );
    if backends.is_empty() {
        let _ = write!(
            text,
            "
    server {{
        listen {listen};
        # The farm has no server with an address yet (nginx refuses an empty upstream).
        location / {{
            return 503 \"the farm has no servers\\n\";
        }}
    }}
}}
",
            listen = settings.listen,
        );
        return text;
    }
    // nginx counts failures in whole seconds: at least one, as long as `fall` check intervals.
    let fail_timeout_s = (settings.check_interval_ms * settings.fall).div_ceil(1000);
    text.push_str(
        "
    upstream farm {
        # Shared by the workers: one round robin, one count of failures and connections.
        zone farm 1m;
",
    );
    if settings.balance == Balance::LeastConn {
        text.push_str("        least_conn;\n");
    }
    let _ = writeln!(
        text,
        "        # Passive checks only: {fall} failed requests within {fail_timeout_s} s take a \
         server out for {fail_timeout_s} s.",
        fall = settings.fall,
    );
    for backend in backends {
        let _ = write!(text, "        server {}", backend.address);
        if let Some(weight) = settings.weight(backend.id) {
            let _ = write!(text, " weight={weight}");
        }
        let _ = writeln!(
            text,
            " max_fails={} fail_timeout={fail_timeout_s}s;  # {}",
            settings.fall,
            backend.name()
        );
    }
    let _ = write!(
        text,
        "        # Idle connections to the nodes kept per worker, closed before the node's own idle
        # timeout would close them under a request.
        keepalive {KEEPALIVE_CONNECTIONS};
        keepalive_timeout {upstream_idle}s;
    }}

    server {{
        listen {listen};
        location / {{
            proxy_pass http://farm;
            # Keep-alive to the nodes needs HTTP/1.1 and no `Connection: close` passed on.
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout {connect}ms;
            # Above the node's slowest route (/slow-endpoint, up to 30 s).
            proxy_read_timeout {server}s;
            proxy_send_timeout {server}s;
            # A failed connection is tried on the next server, {retries} more times at most;
            # nginx never sends a request that is not idempotent (POST) a second time.
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries {tries};
        }}
    }}
}}
",
        upstream_idle = timeouts::UPSTREAM_IDLE_S,
        listen = settings.listen,
        connect = timeouts::CONNECT_MS,
        server = timeouts::SERVER_S,
        retries = RETRIES,
        tries = RETRIES + 1,
    );
    text
}

#[cfg(test)]
mod tests {
    use super::super::Kind;
    use super::super::tests::{settings, two_backends};
    use super::*;

    #[test]
    fn a_whole_nginx_conf_with_its_files_in_the_run_directory() {
        let mut settings = settings(Kind::Nginx);
        settings.weights.insert(1, 4);
        settings.check_interval_ms = 700;
        settings.listen = "[::1]:9000".parse().unwrap();
        let text = render(&settings, &two_backends());
        for line in [
            "pid /run/lb/nginx.pid;\n",
            "error_log /run/lb/error.log notice;\n",
            "    client_body_temp_path /run/lb/client_body_temp;\n",
            "    proxy_temp_path /run/lb/proxy_temp;\n",
            "    access_log /run/lb/access.log farm;\n",
            "        zone farm 1m;\n",
            "        server 127.0.0.1:8001 weight=4 max_fails=3 fail_timeout=3s;  # server-1\n",
            "        server [::1]:8002 max_fails=3 fail_timeout=3s;  # server-2\n",
            "        keepalive 32;\n",
            "        listen [::1]:9000;\n",
            "            proxy_pass http://farm;\n",
            "            proxy_http_version 1.1;\n",
            "            proxy_next_upstream_tries 3;\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(!text.contains("least_conn"));
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn least_conn_and_a_503_for_an_empty_farm() {
        let mut settings = settings(Kind::Nginx);
        settings.balance = Balance::LeastConn;
        assert!(render(&settings, &two_backends()).contains("        least_conn;\n"));
        let empty = render(&settings, &[]);
        assert!(!empty.contains("upstream farm"), "{empty}");
        assert!(empty.contains("return 503"), "{empty}");
        assert_eq!(empty.matches('{').count(), empty.matches('}').count());
    }
}
