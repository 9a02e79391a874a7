//! Mutual TLS and roles, against the real server on a loopback port (no root needed).

use palisade_controlplane::{ControlPlane, serve, store::SledStore};

fn audit_hub(dir: &std::path::Path) -> palisade_controlplane::audit::AuditHub {
    palisade_controlplane::audit::AuditHub::new(
        Box::new(palisade_controlplane::auditlog::SledAuditLog::open(dir).unwrap()),
        Default::default(),
    )
    .unwrap()
}
use palisade_pki::{PkiDir, Role, SERVER_NAME};
use palisade_proto::v1::{self, nodes_client::NodesClient, policies_client::PoliciesClient};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

struct Server {
    url: String,
    pki: PkiDir,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let pki = PkiDir::new(dir.path().join("pki"));
    pki.init(&["node-a".into()], false).unwrap();
    let store = SledStore::open(&dir.path().join("data")).unwrap();
    let audit_dir = dir.path().join("data");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_pki = pki.clone();
    tokio::spawn(async move {
        serve(
            listener,
            &server_pki,
            ControlPlane::new(Box::new(store), audit_hub(&audit_dir)),
            async {
                let _ = stopped.await;
            },
        )
        .await
        .unwrap();
    });
    Server {
        url,
        pki,
        _dir: dir,
        _stop: stop,
    }
}

async fn channel(url: &str, tls: ClientTlsConfig) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(url.to_string())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
}

fn apply_req() -> v1::ApplyRequest {
    v1::ApplyRequest {
        file: "p.rhai".into(),
        source: "policy(\"p\");".into(),
        rollout: None,
    }
}

/// Whether a caller with `tls` is kept out: at the handshake or on its first request.
async fn refused(url: &str, tls: ClientTlsConfig) -> bool {
    match channel(url, tls).await {
        Err(_) => true,
        Ok(ch) => PoliciesClient::new(ch)
            .list(v1::ListRequest {})
            .await
            .is_err(),
    }
}

fn operator_tls(s: &Server) -> ClientTlsConfig {
    s.pki
        .client_tls(&s.pki.cert_paths(Role::Operator, "operator"), SERVER_NAME)
        .unwrap()
}

#[tokio::test]
async fn a_client_with_the_right_certificate_is_served() {
    let s = start().await;
    assert!(
        !refused(&s.url, operator_tls(&s)).await,
        "the control check must pass"
    );
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let s = start().await;
    let ca = Certificate::from_pem(std::fs::read_to_string(s.pki.ca_cert()).unwrap());
    let tls = ClientTlsConfig::new()
        .ca_certificate(ca)
        .domain_name(SERVER_NAME);
    assert!(refused(&s.url, tls).await);
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let s = start().await;
    let other = tempfile::tempdir().unwrap();
    let foreign = PkiDir::new(other.path());
    foreign.init(&[], false).unwrap();
    // Trust the real server, but present an operator certificate the real CA never signed.
    let ca = Certificate::from_pem(std::fs::read_to_string(s.pki.ca_cert()).unwrap());
    let own = foreign.cert_paths(Role::Operator, "operator");
    let tls = ClientTlsConfig::new()
        .ca_certificate(ca)
        .identity(tonic::transport::Identity::from_pem(
            std::fs::read_to_string(&own.cert).unwrap(),
            std::fs::read_to_string(&own.key).unwrap(),
        ))
        .domain_name(SERVER_NAME);
    assert!(refused(&s.url, tls).await);
}

#[tokio::test]
async fn an_operator_may_apply_and_a_node_may_not() {
    let s = start().await;
    let mut c = PoliciesClient::new(channel(&s.url, operator_tls(&s)).await.unwrap());
    assert_eq!(c.apply(apply_req()).await.unwrap().into_inner().revision, 1);

    let node = s
        .pki
        .client_tls(&s.pki.cert_paths(Role::Node, "node-a"), SERVER_NAME)
        .unwrap();
    let mut c = PoliciesClient::new(channel(&s.url, node).await.unwrap());
    let err = c.apply(apply_req()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn a_node_cannot_register_under_another_name() {
    let s = start().await;
    let node = s
        .pki
        .client_tls(&s.pki.cert_paths(Role::Node, "node-a"), SERVER_NAME)
        .unwrap();
    let mut c = NodesClient::new(channel(&s.url, node).await.unwrap());
    let reg = v1::NodeMessage {
        msg: Some(v1::node_message::Msg::Register(v1::Register {
            name: "node-b".into(),
            ..Default::default()
        })),
    };
    let err = c.session(tokio_stream::iter(vec![reg])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("node-a"), "{}", err.message());
}

#[tokio::test]
async fn a_policy_with_errors_is_rejected_with_its_location_and_not_stored() {
    let s = start().await;
    let mut c = PoliciesClient::new(channel(&s.url, operator_tls(&s)).await.unwrap());
    let err = c
        .apply(v1::ApplyRequest {
            file: "x.rhai".into(),
            source: "policy(\"x\");\nnetwork().ingress().deny(\"10.0.0.1/8\");".into(),
            rollout: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("x.rhai:2:"), "{}", err.message());
    assert!(
        c.list(v1::ListRequest {})
            .await
            .unwrap()
            .into_inner()
            .policies
            .is_empty()
    );
}

/// A directory sharing the server's CA, to issue certificates with odd properties.
fn sibling(s: &Server) -> (tempfile::TempDir, PkiDir) {
    let dir = tempfile::tempdir().unwrap();
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(s.pki.root.join(f), dir.path().join(f)).unwrap();
    }
    let pki = PkiDir::new(dir.path());
    (dir, pki)
}

fn tls_from(pki: &PkiDir, trust: &PkiDir, role: Role, name: &str) -> ClientTlsConfig {
    let own = pki.cert_paths(role, name);
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read_to_string(trust.ca_cert()).unwrap(),
        ))
        .identity(tonic::transport::Identity::from_pem(
            std::fs::read_to_string(&own.cert).unwrap(),
            std::fs::read_to_string(&own.key).unwrap(),
        ))
        .domain_name(SERVER_NAME)
}

#[tokio::test]
async fn an_expired_certificate_is_refused_and_a_valid_one_from_the_same_ca_is_not() {
    let s = start().await;
    let (_d, side) = sibling(&s);
    side.issue_valid(
        Role::Operator,
        "operator",
        palisade_pki::Validity {
            from_days: -30,
            to_days: -1,
        },
    )
    .unwrap();
    assert!(refused(&s.url, tls_from(&side, &s.pki, Role::Operator, "operator")).await);
    side.issue_valid(Role::Operator, "operator", palisade_pki::Validity::days(1))
        .unwrap();
    assert!(
        !refused(&s.url, tls_from(&side, &s.pki, Role::Operator, "operator")).await,
        "the control check must pass"
    );
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_without_a_restart() {
    let s = start().await;
    assert!(!refused(&s.url, operator_tls(&s)).await);
    s.pki.revoke(Role::Operator, "operator").unwrap();
    assert!(refused(&s.url, operator_tls(&s)).await, "revoked");
    // The viewer, not revoked, still gets in.
    let viewer = s
        .pki
        .client_tls(&s.pki.cert_paths(Role::Viewer, "viewer"), SERVER_NAME)
        .unwrap();
    assert!(!refused(&s.url, viewer).await);
    // A renewed operator certificate is accepted.
    s.pki.issue(Role::Operator, "operator").unwrap();
    assert!(!refused(&s.url, operator_tls(&s)).await, "renewed");
}

#[tokio::test]
async fn a_rotated_ca_and_certificates_are_picked_up_without_a_restart() {
    let s = start().await;
    // Keep the old operator identity to show the bundle still trusts the old CA.
    let old = tempfile::tempdir().unwrap();
    let old_pki = PkiDir::new(old.path());
    std::fs::copy(s.pki.ca_cert(), old_pki.ca_cert()).unwrap();
    let op = s.pki.cert_paths(Role::Operator, "operator");
    let old_op = old_pki.cert_paths(Role::Operator, "operator");
    std::fs::copy(&op.cert, &old_op.cert).unwrap();
    std::fs::copy(&op.key, &old_op.key).unwrap();

    s.pki.rotate(true, palisade_pki::Validity::LEAF).unwrap();
    let bundle = std::fs::read_to_string(s.pki.ca_cert()).unwrap();
    assert_eq!(
        bundle.matches("BEGIN CERTIFICATE").count(),
        2,
        "new CA + previous"
    );
    // The new operator certificate is signed by a CA the server did not know at start:
    // accepted only because the server reloaded the bundle.
    assert!(
        !refused(&s.url, operator_tls(&s)).await,
        "new CA's operator"
    );
    // The old certificate still chains to the previous CA kept in the bundle; the client
    // trusts the new bundle to verify the server's new certificate.
    assert!(
        !refused(
            &s.url,
            tls_from(&old_pki, &s.pki, Role::Operator, "operator")
        )
        .await
    );
    // Rotating again drops the first CA from the bundle: the oldest certificate is refused.
    s.pki.rotate(true, palisade_pki::Validity::LEAF).unwrap();
    assert!(
        refused(
            &s.url,
            tls_from(&old_pki, &s.pki, Role::Operator, "operator")
        )
        .await
    );
    assert!(!refused(&s.url, operator_tls(&s)).await);
}
