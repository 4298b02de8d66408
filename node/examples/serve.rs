//! Serves one node on a current_thread runtime (the way the cli will), for benchmarks:
//! `cargo run --release -p farm-node --example serve -- 127.0.0.1:18001`.

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18001".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        let token = tokio_util::sync::CancellationToken::new();
        let config = farm_node::Config {
            server_id: 1,
            name: "server-1".into(),
        };
        farm_node::run(config, listener, token).await.expect("run");
    });
}
