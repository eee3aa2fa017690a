//! Unit tests for URL/conninfo parsing, environment fallbacks and password lookup.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn parse(s: &str) -> Result<Endpoint, EndpointError> {
    Endpoint::parse_with_env(s, &env_of(&[("USER", "osuser")]))
}

fn error(s: &str) -> String {
    match parse(s) {
        Ok(endpoint) => panic!("{s:?} parsed as {endpoint:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn parses_urls() {
    let e = parse("postgres://alice:s%40cret@db.example.com:6543/shop?sslmode=verify-full&application_name=pgmorph").unwrap();
    assert_eq!(
        (e.host.as_str(), e.port, e.user.as_str(), e.dbname.as_str()),
        ("db.example.com", 6543, "alice", "shop")
    );
    assert_eq!(e.password(), Some("s@cret"));
    assert_eq!(e.tls.mode, SslMode::VerifyFull);
    assert_eq!(e.application_name.as_deref(), Some("pgmorph"));
    assert_eq!(e.describe(), "alice@db.example.com:6543/shop");

    let e =
        parse("postgresql://[::1]:5433/db?sslrootcert=system&sslsni=0&connect_timeout=1").unwrap();
    assert_eq!(
        (e.host.as_str(), e.port, e.user.as_str()),
        ("::1", 5433, "osuser")
    );
    assert_eq!(e.tls.root_cert, Some(RootCert::System));
    assert!(!e.tls.sni);
    assert_eq!(e.connect_timeout, Some(Duration::from_secs(2)));

    let e = parse("postgresql://%2Fvar%2Frun%2Fpostgresql/app?ssl=true").unwrap();
    assert!(e.is_unix_socket());
    assert_eq!(
        e.socket_path(),
        PathBuf::from("/var/run/postgresql/.s.PGSQL.5432")
    );
    assert_eq!(e.tls.mode, SslMode::Require);
    assert_eq!(e.dbname, "app");
}

#[test]
fn parses_conninfo_with_quotes_and_escapes() {
    let e = parse(r"host=10.0.0.5 port = 5433 user=bob password='it\'s a \\secret' dbname=x\ y options='-c search_path=s' sslkey=/k").unwrap();
    assert_eq!(e.host, "10.0.0.5");
    assert_eq!(e.port, 5433);
    assert_eq!(e.password(), Some(r"it's a \secret"));
    assert_eq!(e.dbname, "x y");
    assert_eq!(e.options.as_deref(), Some("-c search_path=s"));
    assert_eq!(e.tls.key, Some(PathBuf::from("/k")));
    let e = parse("host=h hostaddr=127.0.0.1 user=u password=''").unwrap();
    assert_eq!(e.hostaddr, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(e.password(), None, "an empty value counts as unset");
}

#[test]
fn errors_name_the_wrong_part() {
    assert_eq!(
        error("host=h port=notaport"),
        "port \"notaport\" is not a number"
    );
    assert_eq!(
        error("postgres://h:notaport/db"),
        "port \"notaport\" is not a number"
    );
    assert_eq!(
        error("host=h sslrootcrt=/x"),
        "unknown parameter \"sslrootcrt\""
    );
    assert_eq!(
        error("postgres://h/db?sslrootcrt=/x"),
        "unknown parameter \"sslrootcrt\""
    );
    assert_eq!(
        error("sslmode=verify_full"),
        "sslmode \"verify_full\" is not one of disable, allow, prefer, require, verify-ca, verify-full"
    );
    assert_eq!(
        error("host=h user"),
        "missing \"=\" after \"user\" in the connection string"
    );
    assert_eq!(
        error("password='abc"),
        "unterminated quoted value for \"password\" in the connection string"
    );
    assert_eq!(
        error("hostaddr=nope"),
        "hostaddr \"nope\" is not an IP address"
    );
    assert_eq!(
        error("connect_timeout=soon"),
        "connect_timeout \"soon\" is not a number of seconds"
    );
    assert_eq!(error("sslsni=yes"), "sslsni \"yes\" is not 0 or 1");
    assert_eq!(
        error("host=a,b"),
        "host \"a,b\" names several hosts, which is not supported"
    );
    assert_eq!(
        error("postgres://h/db?sslmode"),
        "invalid URL: query parameter \"sslmode\" has no \"=\""
    );
    assert_eq!(
        error("postgres://[::1/db"),
        "invalid URL: missing \"]\" in host \"[::1\""
    );
    assert_eq!(
        error("postgres://h/d%zzb"),
        "invalid URL: invalid percent-encoding in \"d%zzb\""
    );
    let no_user = Endpoint::parse_with_env("host=h", &env_of(&[])).unwrap_err();
    assert_eq!(
        no_user.to_string(),
        "no user name given: set user in the connection string or PGUSER"
    );
}

#[test]
fn environment_fills_what_the_string_leaves_out() {
    let env = env_of(&[
        ("PGHOST", "envhost"),
        ("PGPORT", "7777"),
        ("PGUSER", "envuser"),
        ("PGDATABASE", "envdb"),
        ("PGSSLMODE", "verify-ca"),
        ("PGSSLROOTCERT", "/ca.pem"),
        ("PGSSLCERT", "/c.pem"),
        ("PGSSLKEY", "/k.pem"),
        ("PGAPPNAME", "app"),
        ("PGPASSFILE", "/pgpass"),
        ("HOME", "/home/u"),
    ]);
    let e = Endpoint::parse_with_env("port=1234", &env).unwrap();
    assert_eq!(
        (e.host.as_str(), e.port, e.user.as_str(), e.dbname.as_str()),
        ("envhost", 1234, "envuser", "envdb")
    );
    assert_eq!(e.tls.mode, SslMode::VerifyCa);
    assert_eq!(e.tls.root_cert, Some(RootCert::File("/ca.pem".into())));
    assert_eq!(e.tls.cert, Some("/c.pem".into()));
    assert_eq!(e.tls.key, Some("/k.pem".into()));
    assert_eq!(e.tls.home, Some("/home/u".into()));
    assert_eq!(e.application_name.as_deref(), Some("app"));
    assert_eq!(e.passfile, Some("/pgpass".into()));
    let defaults = parse("").unwrap();
    assert_eq!(
        (
            defaults.host.as_str(),
            defaults.port,
            defaults.dbname.as_str()
        ),
        ("localhost", 5432, "osuser")
    );
    assert_eq!(
        defaults.tls.mode,
        SslMode::Prefer,
        "libpq's default sslmode"
    );
    assert!(defaults.tls.sni);
}

#[test]
fn password_never_shows_in_debug_or_display() {
    let e = parse("host=h user=u password=hunter2").unwrap();
    assert!(!format!("{e:?}{e}").contains("hunter2"));
}

#[test]
fn password_sources_in_libpq_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-file\nsecond line\n").unwrap();
    let env = env_of(&[("USER", "u"), ("PGPASSWORD", "from-env")]);
    let mut e = Endpoint::parse_with_env("host=h password=given", &env).unwrap();
    assert_eq!(
        e.resolve_password(Some(&file), &env).unwrap().0,
        PasswordSource::ConnectionString
    );
    let mut e2 = Endpoint::parse_with_env("host=h", &env).unwrap();
    assert_eq!(
        e2.resolve_password(Some(&file), &env).unwrap().0,
        PasswordSource::PasswordFile(file.clone())
    );
    assert_eq!(e2.password(), Some("from-file"));
    e.set_password(None);
    assert_eq!(
        e.resolve_password(None, &env).unwrap().0,
        PasswordSource::Environment
    );
    assert_eq!(e.password(), Some("from-env"));
}

#[test]
fn pgpass_matching_wildcards_and_escapes() {
    let text = "# comment\nother:5432:*:u:wrong\nh\\:x:5432:db:u:p\\:1\\\\\n*:*:*:u:fallback:with:colons\n";
    let mut e = parse("host=h:x port=5432 dbname=db user=u").unwrap();
    assert_eq!(pgpass::find_password(text, &e).as_deref(), Some(r"p:1\"));
    e.host = "elsewhere".into();
    assert_eq!(
        pgpass::find_password(text, &e).as_deref(),
        Some("fallback:with:colons")
    );
    e.user = "nobody-else".into();
    assert_eq!(pgpass::find_password(text, &e), None);
    let unix = parse("host=/tmp user=u dbname=d").unwrap();
    assert_eq!(
        pgpass::find_password("localhost:5432:d:u:sock", &unix).as_deref(),
        Some("sock")
    );
}

#[test]
fn pgpass_file_is_ignored_when_others_can_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".pgpass");
    std::fs::write(&path, "*:*:*:*:secret\n").unwrap();
    let home = dir.path().to_str().unwrap().to_owned();
    let env = env_of(&[("USER", "u"), ("HOME", &home)]);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut e = Endpoint::parse_with_env("host=h", &env).unwrap();
    let (source, warnings) = e.resolve_password(None, &env).unwrap();
    assert_eq!(source, PasswordSource::Absent);
    assert!(
        matches!(
            warnings.as_slice(),
            [EndpointError::PgpassInsecure { mode: 0o644, .. }]
        ),
        "{warnings:?}"
    );
    assert!(warnings[0].to_string().contains("group or world access"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (source, warnings) = e.resolve_password(None, &env).unwrap();
    assert_eq!((source, warnings.len()), (PasswordSource::Pgpass(path), 0));
    assert_eq!(e.password(), Some("secret"));
}
