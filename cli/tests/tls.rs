//! TLS on the controller's gRPC port: a farm of local processes whose controller serves a
//! certificate signed by a test CA, its agents and gateway trusting that CA; clients without
//! TLS or trusting another CA are turned away; bad certificate files stop `farm up` before
//! anything starts, saying why.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Farm, TestCa, farm_bin, get, unique_dir};
use farm_proto::v1::ListServersRequest;
use farm_proto::v1::farm_service_client::FarmServiceClient;

/// `farm up` of `servers` servers whose controller serves TLS with `ca`'s certificate.
fn tls_farm(ca: &TestCa, servers: u32) -> Farm {
    let (cert, key, ca) = (
        ca.cert.to_str().unwrap(),
        ca.key.to_str().unwrap(),
        ca.ca.to_str().unwrap(),
    );
    Farm::start(
        servers,
        &["--tls-cert", cert, "--tls-key", key, "--tls-ca", ca],
        &[],
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The servers the controller at `url` lists, over TLS trusting `ca`'s PEM.
async fn list_over_tls(url: &str, ca: &[u8]) -> Result<usize, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
        )
        .map_err(|e| e.to_string())?;
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    let reply = FarmServiceClient::new(channel)
        .list_servers(ListServersRequest::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(reply.into_inner().servers.len())
}

#[tokio::test]
async fn agents_gateway_and_clients_reach_a_controller_over_tls_and_nobody_else_does() {
    let ca = TestCa::new(&["IP:127.0.0.1", "DNS:localhost"]);
    let farm = tls_farm(&ca, 3);
    let url = format!("https://{}", farm.controller);
    let ca_pem = std::fs::read(&ca.ca).unwrap();

    // The agents got in over TLS (the farm turned healthy), and the gateway reaches the
    // controller over it too.
    assert_eq!(list_over_tls(&url, &ca_pem).await, Ok(3));
    let reply = get(&format!("{}/api/servers", farm.gateway_url())).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let list = reply.json()["servers"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|s| s["status"] == "healthy"), "{list:#?}");

    // A plaintext client gets nothing.
    let plain = async {
        let mut client = FarmServiceClient::connect(format!("http://{}", farm.controller))
            .await
            .ok()?;
        client
            .list_servers(ListServersRequest::default())
            .await
            .ok()
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(10), plain)
            .await
            .ok()
            .flatten()
            .is_none(),
        "a plaintext client was answered"
    );

    // A client trusting another CA refuses the controller's certificate.
    let other = TestCa::new(&["IP:127.0.0.1"]);
    let refused = list_over_tls(&url, &std::fs::read(&other.ca).unwrap()).await;
    assert!(refused.is_err(), "a client of another CA was answered");

    // The command line trusts the CA that FARM_TLS_CA names, and says what is missing
    // without one.
    let status = |ca: Option<&std::path::Path>| {
        let mut command = Command::new(farm_bin());
        command.args(["status", "--controller", &url]);
        command.env_remove("FARM_TLS_CA");
        if let Some(ca) = ca {
            command.env("FARM_TLS_CA", ca);
        }
        command.output().unwrap()
    };
    let trusted = status(Some(&ca.ca));
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    for id in 1..=3 {
        assert!(
            String::from_utf8_lossy(&trusted.stdout).contains(&format!("server-{id}")),
            "{}",
            String::from_utf8_lossy(&trusted.stdout)
        );
    }
    let untrusted = status(None);
    assert!(!untrusted.status.success());
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("FARM_TLS_CA"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
}

#[test]
fn bad_certificate_files_stop_farm_up_before_anything_starts() {
    let ca = TestCa::new(&["IP:127.0.0.1"]);
    let other = TestCa::new(&["IP:127.0.0.1"]);
    let missing = ca.dir.join("no-such.pem");
    let not_pem = ca.dir.join("ext.cnf");
    let data = unique_dir("farm-data");
    let up = |args: &[&std::path::Path]| {
        let mut command = Command::new(farm_bin());
        command
            .env("FARM_DATA_DIR", &data)
            .args(["up", "--servers", "1", "--listen", "127.0.0.1:0"])
            .args(["--gateway-listen", "127.0.0.1:0", "--node-base-port", "0"]);
        let flags = ["--tls-cert", "--tls-key", "--tls-ca"];
        for (flag, path) in flags.iter().zip(args) {
            command.arg(flag).arg(path);
        }
        // A farm up that wrongly starts is stopped, not waited on for ever.
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !waiter.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !waiter.is_finished() {
            common::signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let output = waiter.join().unwrap();
        assert!(!output.status.success(), "farm up {args:?} started");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let said = up(&[&missing, &ca.key]);
    assert!(
        said.contains("--tls-cert") && said.contains("no-such.pem"),
        "{said}"
    );
    let said = up(&[&not_pem, &ca.key]);
    assert!(said.contains("not a PEM file"), "{said}");
    // A key that is not the certificate's.
    let said = up(&[&ca.cert, &other.key]);
    assert!(said.contains("do not make a TLS server"), "{said}");
    let said = up(&[&ca.cert, &ca.key, &missing]);
    assert!(said.contains("--tls-ca"), "{said}");
    // A certificate without its key is refused by the command line itself.
    let output = Command::new(farm_bin())
        .args(["up", "--tls-cert"])
        .arg(&ca.cert)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--tls-key"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&data);
}
