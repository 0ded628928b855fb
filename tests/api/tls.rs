//! TLS to PostgreSQL in every `sslmode`, against a local PostgreSQL started
//! with `ssl=on` and a certificate this test makes (its own CA).

use std::{
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use acctstream::db::{
    embedded::{EmbeddedOptions, EmbeddedPostgres},
    tls,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

struct SslServer {
    port: u16,
    ca: PathBuf,
    other_ca: PathBuf,
    _pg: EmbeddedPostgres,
}

/// A CA, and a server certificate for `localhost` it signed.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let issuer = ca("acctstream test CA");
    let other = ca("some other CA");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server = params.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    (
        write("ca.pem", issuer.pem()),
        write("other-ca.pem", other.pem()),
        write("server.crt", server.pem()),
        write("server.key", key.serialize_pem()),
    )
}

/// Gives the files to PostgreSQL's user when we are root (it refuses a
/// key others can read, and must be able to read it).
fn hand_to_postgres(files: &[&Path]) {
    for file in files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    let user = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !user.is_null(),
        "running as root needs a `postgres` user to run PostgreSQL (install postgresql)"
    );
    let (uid, gid) = unsafe { ((*user).pw_uid, (*user).pw_gid) };
    for file in files {
        std::os::unix::fs::chown(file, Some(uid), Some(gid)).unwrap();
    }
}

fn server() -> &'static SslServer {
    static SERVER: OnceLock<SslServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = acctstream::db::embedded::test_cluster_dir().expect("a cluster directory");
        std::fs::create_dir_all(&dir).unwrap();
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (ca, other_ca, crt, key) = certificates(&certs);
        hand_to_postgres(&[&crt, &key]);
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = EmbeddedPostgres::start(EmbeddedOptions {
            data_dir: dir.join("cluster"),
            durable: false,
            tcp_port: Some(port),
            settings: vec![
                ("ssl".into(), "on".into()),
                ("ssl_cert_file".into(), crt.display().to_string()),
                ("ssl_key_file".into(), key.display().to_string()),
            ],
        })
        .expect("start PostgreSQL with ssl=on");
        SslServer {
            port,
            ca,
            other_ca,
            _pg: pg,
        }
    })
}

fn url(host: &str, query: &str) -> String {
    format!(
        "postgresql://{}@{host}:{}/postgres?{query}",
        acctstream::db::embedded::SUPERUSER,
        server().port
    )
}

/// Connects as `DATABASE_URL` would; `Ok(ssl in use)`, or the error text.
async fn connect(url: &str) -> Result<bool, String> {
    let (config, settings) = tls::parse(url).map_err(|e| e.to_string())?;
    let connector = tls::connector(&settings).map_err(|e| e.to_string())?;
    let (client, connection) = config
        .connect(connector)
        .await
        .map_err(|e| tls::with_causes(&e))?;
    actix_web::rt::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[actix_web::test]
async fn every_sslmode_against_a_server_with_ssl_on() {
    let s = server();
    let ca = s.ca.display();
    let other = s.other_ca.display();
    assert_eq!(
        connect(&url("127.0.0.1", "sslmode=disable")).await,
        Ok(false)
    );
    assert_eq!(connect(&url("127.0.0.1", "sslmode=prefer")).await, Ok(true));
    assert_eq!(
        connect(&url("127.0.0.1", "sslmode=require")).await,
        Ok(true)
    );
    // verify-ca checks the chain, not the name (the certificate is for localhost).
    assert_eq!(
        connect(&url(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={ca}")
        ))
        .await,
        Ok(true)
    );
    assert_eq!(
        connect(&url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}")
        ))
        .await,
        Ok(true)
    );
    // verify-full checks the host name.
    let error = connect(&url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .unwrap_err();
    assert!(error.contains("not valid for name"), "{error}");
    // A certificate from another CA fails verify-ca and verify-full, and
    // require with an explicit root (as libpq).
    for mode in ["verify-ca", "verify-full", "require"] {
        let error = connect(&url(
            "localhost",
            &format!("sslmode={mode}&sslrootcert={other}"),
        ))
        .await
        .unwrap_err();
        assert!(
            error.contains("invalid peer certificate"),
            "{mode}: {error}"
        );
    }
}

#[actix_web::test]
async fn a_certificate_that_does_not_verify_is_a_clear_start_up_error() {
    let s = server();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_acctstream"))
        .arg("migrate")
        .env(
            "DATABASE_URL",
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={}", s.other_ca.display()),
            ),
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TLS") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_acctstream"))
        .arg("migrate")
        .env(
            "DATABASE_URL",
            url(
                "localhost",
                "sslmode=verify-full&sslrootcert=/nonexistent.pem",
            ),
        )
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("sslrootcert /nonexistent.pem"), "{stderr}");
}
