# nginx as a reference server for the benchmarks (bench/node-health.sh, gateway/bench.sh):
# a config of our own, so nothing of the machine's nginx setup (root paths, a daemon, its
# workers) is used. Source it; it needs nginx on PATH (apt-get install -y nginx-light).
# nginx cannot say which port it got, so it listens on a random port below the kernel's
# ephemeral range, and on another when that one is taken (scripts/lib/ports.sh).

source "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# write_nginx_conf DIR PORT LOCATION: writes DIR/nginx.conf for one worker in the
# foreground, no access log, sendfile, keep-alive connections that are not retired during a
# run, listening on 127.0.0.1:PORT, with LOCATION as the body of its one `location /`.
write_nginx_conf() {
    local dir=$1 port=$2 location=$3
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nodelay on;
    open_file_cache max=16;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    default_type application/json;
    server {
        listen 127.0.0.1:$port;
        location / { $location }
    }
}
CONF
}

# start_nginx DIR PORT LOCATION [PREFIX...]: writes DIR/nginx.conf (see write_nginx_conf) and
# runs nginx with it in the background, behind PREFIX (such as `taskset -c 0`) if given, and
# waits (10 s at most) until it has bound its port. On PORT if given; else (PORT empty) on a
# random port below 32768, and on another when that one is taken, 5 attempts. Sets NGINX_PID
# and NGINX_PORT.
start_nginx() {
    local dir=$1 port=$2 location=$3 attempt attempts=5 i
    shift 3
    [[ -z $port ]] || attempts=1
    for ((attempt = 1; attempt <= attempts; attempt++)); do
        NGINX_PORT=${port:-$(low_port)}
        write_nginx_conf "$dir" "$NGINX_PORT" "$location"
        rm -f "$dir/nginx.pid" "$dir/error.log"
        "$@" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
        NGINX_PID=$!
        # nginx writes its pid file once its listening socket is bound, and gives up a bind
        # only after several seconds of retries: an "in use" in its log is enough.
        for ((i = 0; i < 100; i++)); do
            [[ -s $dir/nginx.pid ]] && return 0
            grep -qs "Address already in use" "$dir/error.log" "$dir/stdout.log" && break
            kill -0 "$NGINX_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
        NGINX_PID=
        if ! grep -qs "Address already in use" "$dir/error.log" "$dir/stdout.log"; then
            echo "nginx did not start on 127.0.0.1:$NGINX_PORT (it exited, or no pid file within 10 s):" >&2
            cat "$dir/error.log" "$dir/stdout.log" >&2 2>/dev/null || true
            return 1
        fi
        echo "nginx: 127.0.0.1:$NGINX_PORT is taken" >&2
    done
    echo "nginx found no free port in $attempts attempt(s)" >&2
    return 1
}
