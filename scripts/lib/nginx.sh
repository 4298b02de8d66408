# nginx as a reference server for the benchmarks (bench/node-health.sh, gateway/bench.sh):
# a config of our own, so nothing of the machine's nginx setup (root paths, a daemon, its
# workers) is used. Source it; it needs nginx on PATH (apt-get install -y nginx-light).

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

# start_nginx DIR [PREFIX...]: runs nginx with DIR/nginx.conf in the background, behind
# PREFIX (such as `taskset -c 0`) if given; sets NGINX_PID.
start_nginx() {
    local dir=$1
    shift
    "$@" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
    NGINX_PID=$!
}
