//! The configuration's tests: defaults, file, environment, validation.

use super::*;

/// The leaves of a TOML document, by dotted key.
fn leaves(v: &toml::Value, prefix: &str, out: &mut std::collections::BTreeMap<String, toml::Value>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaves(v, &key, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn keys_of(cfg: &Config) -> std::collections::BTreeMap<String, toml::Value> {
    let mut out = Default::default();
    leaves(&toml::Value::try_from(cfg).unwrap(), "", &mut out);
    out
}

#[test]
fn every_key_of_the_reference_has_an_environment_variable() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
    let mut documented = Default::default();
    leaves(
        &std::fs::read_to_string(path).unwrap().parse::<toml::Table>().unwrap().into(),
        "",
        &mut documented,
    );
    let with_var: std::collections::BTreeSet<&str> = ENV_VARS.iter().map(|(_, k)| *k).collect();
    let missing: Vec<&String> = documented.keys().filter(|k| !with_var.contains(k.as_str())).collect();
    assert!(missing.is_empty(), "keys without an environment variable: {missing:?}");
    let stale: Vec<&&str> = with_var.iter().filter(|k| !documented.contains_key(**k)).collect();
    assert!(stale.is_empty(), "variables for keys config/default.toml does not have: {stale:?}");
    let vars: std::collections::BTreeSet<&str> = ENV_VARS.iter().map(|(v, _)| *v).collect();
    assert_eq!(vars.len(), ENV_VARS.len(), "a variable is listed twice");
}

/// Each variable, set alone, changes exactly its key.
#[test]
fn every_environment_variable_sets_its_key() {
    let sample = |key: &str| match key {
        "data_dir" => "/srv/depot",
        "listen" => "localhost:9000",
        "log" => "depot=debug",
        "log_format" => "json",
        "worker_threads" => "3",
        "chunking.min" => "32KiB",
        "chunking.avg" => "131072",
        "chunking.max" => "2MiB",
        "storage.compression_level" => "3",
        "storage.fsync" => "always",
        "storage.direct_writes" => "false",
        "storage.packs" => "false",
        "storage.pack_size" => "16MiB",
        "storage.read_ahead" => "8",
        "limits.max_file_size" => "10GiB",
        "limits.max_chunk_size" => "8MiB",
        "limits.max_piece_size" => "16MiB",
        "limits.max_pieces" => "500",
        "limits.max_missing_query" => "1000",
        "limits.max_json_body" => "1MiB",
        "limits.max_buffered" => "16MiB",
        "types.allowed_extensions" => "png, jpg",
        "types.allowed_types" => "image/*,application/pdf",
        "uploads.expiry" => "2h",
        "gc.grace" => "5m",
        "gc.interval" => "0",
        "gc.chunk_lease" => "12h",
        "rate_limit.enabled" => "false",
        "rate_limit.api_per_second" => "7",
        "rate_limit.api_burst" => "9",
        "rate_limit.upload_per_second" => "70",
        "rate_limit.upload_burst" => "90",
        "rate_limit.trusted_proxies" => "10.0.0.0/8,::1",
        "rate_limit.auth_failures_per_minute" => "3",
        "cors.allowed_origins" => "https://a.example,https://b.example",
        "cors.allowed_methods" => "GET,HEAD",
        "cors.allowed_headers" => "Range",
        "cors.exposed_headers" => "ETag",
        "cors.max_age" => "10m",
        "storage.min_free" => "1GiB",
        "storage.objects" => "s3",
        "storage.s3.endpoint" => "https://s3.example.com",
        "storage.s3.bucket" => "files",
        "storage.s3.region" => "us-east-1",
        "storage.s3.prefix" => "depot/",
        "storage.s3.max_in_flight" => "8",
        "storage.s3.read_ahead" => "5",
        "storage.s3.allow_http" => "true",
        "storage.meta" => "postgres://depot:pw@db.example:5432/depot",
        "storage.shared" => "true",
        "gc.reader_ttl" => "5s",
        "gc.claim_timeout" => "2m",
        "limits.header_timeout" => "7s",
        "limits.body_idle_timeout" => "9s",
        "limits.max_connections" => "77",
        "auth.mode" => "token",
        "auth.token_expiry" => "30d",
        "auth.link_max_ttl" => "1h",
        other => panic!("no sample value for {other}"),
    };
    let defaults = keys_of(&Config::default());
    for (var, key) in ENV_VARS {
        // A shared store needs its engines: set with theirs.
        let needs: &[&str] =
            if *key == "storage.shared" { &["storage.meta", "storage.objects"] } else { &[] };
        let env = |k: &str| {
            let key = ENV_VARS.iter().find(|(v, _)| *v == k).map(|(_, key)| *key)?;
            (k == *var || needs.contains(&key)).then(|| sample(key).to_string())
        };
        let cfg = Config::load(None, env).unwrap_or_else(|e| panic!("{var}={}: {e}", sample(key)));
        let now = keys_of(&cfg);
        let changed: Vec<&String> = now.keys().filter(|k| now.get(*k) != defaults.get(*k)).collect();
        let mut want: Vec<&str> = needs.iter().copied().chain([*key]).collect();
        want.sort_unstable();
        assert_eq!(changed, want, "{var}={}", sample(key));
    }
    let cfg =
        Config::load(None, |k| (k == "DEPOT_ALLOWED_TYPES").then(|| "image/*, text/plain".into())).unwrap();
    assert_eq!(cfg.types.allowed_types, ["image/*", "text/plain"]);
    let e = Config::load(None, |k| (k == "DEPOT_RATE_LIMIT_API_BURST").then(|| "many".into())).unwrap_err();
    assert!(e.to_string().contains("DEPOT_RATE_LIMIT_API_BURST"), "{e}");
}

#[test]
fn a_meta_url_password_never_shows() {
    let e = Config::load(None, |k| (k == "DEPOT_META").then(|| "mysql://u:hunter2@db/x".into())).unwrap_err();
    assert!(e.to_string().contains("DEPOT_META") && !e.to_string().contains("hunter2"), "{e}");
    let e = Config::from_toml("[storage]\nmeta = \"pg://u:hunter2@db/x\"\n").unwrap_err();
    assert!(e.contains("meta") && !e.contains("hunter2"), "{e}");
    let cfg = Config::from_toml("[storage]\nmeta = \"postgresql://u:hunter2@db/x\"\n").unwrap();
    assert_eq!(cfg.storage.meta, crate::store::MetaBackend::Postgres("postgresql://u:hunter2@db/x".into()));
    assert!(!format!("{cfg:?}").contains("hunter2"));
}

#[test]
fn shipped_default_toml_is_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
    let cfg = Config::from_file(&path).unwrap();
    assert_eq!(cfg, Config::default());
    cfg.validate().unwrap();
}

#[test]
fn unknown_key_is_named() {
    let e = Config::from_toml("listen = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap_err();
    assert!(e.contains("listen_port"), "{e}");
    let e = Config::from_toml("[gc]\ngrace_period = \"1h\"\n").unwrap_err();
    assert!(e.contains("grace_period"), "{e}");
}

#[test]
fn layers_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\n[gc]\ngrace = \"5m\"\n")
        .unwrap();
    let env = |k: &str| (k == "DEPOT_DATA_DIR").then(|| "/from/env".to_string());
    let cfg = Config::load(Some(&path), env).unwrap();
    assert_eq!(cfg.listen, "127.0.0.1:9000");
    assert_eq!(cfg.data_dir, PathBuf::from("/from/env"));
    assert_eq!(cfg.gc.grace.0, Duration::from_secs(300));
    assert_eq!(cfg.gc.interval, GcConfig::default().interval);
    let bad = |k: &str| (k == "DEPOT_GC_GRACE").then(|| "soon".to_string());
    let e = Config::load(None, bad).unwrap_err().to_string();
    assert!(e.contains("DEPOT_GC_GRACE"), "{e}");
}

#[test]
fn sizes_and_durations_parse() {
    assert_eq!("64KiB".parse::<ByteSize>().unwrap().0, 65536);
    assert_eq!("1 GiB".parse::<ByteSize>().unwrap().0, 1 << 30);
    assert_eq!("10MB".parse::<ByteSize>().unwrap().0, 10_000_000);
    assert!("12 parsecs".parse::<ByteSize>().is_err());
    assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
    assert_eq!("24h".parse::<Dur>().unwrap().0, Duration::from_secs(86400));
    assert_eq!("500ms".parse::<Dur>().unwrap().0, Duration::from_millis(500));
    assert_eq!(Dur(Duration::from_secs(90)).to_string(), "90s");
    assert!("1y".parse::<Dur>().is_err());
}

#[test]
fn inconsistent_values_are_refused() {
    let mut c = Config::default();
    c.limits.max_chunk_size = ByteSize(1024);
    assert!(c.validate().is_err());
    for bad in ["localhost", "localhost:", ":8080", "local host:80", "host:99999", "-a:80"] {
        let c = Config { listen: bad.into(), ..Config::default() };
        assert!(c.validate().is_err(), "{bad}");
    }
    for good in ["localhost:8081", "0.0.0.0:8080", "[::1]:0", "depot.example.org:80"] {
        let c = Config { listen: good.into(), ..Config::default() };
        c.validate().unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    let mut c = Config::default();
    c.chunking.avg = 3000;
    assert!(c.validate().is_err());
}

#[test]
fn s3_settings_are_checked_only_when_used() {
    let mut c = Config::default();
    c.storage.s3.endpoint = "http://127.0.0.1:3900".into();
    c.validate().expect("objects = fs: the s3 table is not read");
    c.storage.objects = crate::store::objects::ObjectsKind::S3;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("allow_http"), "{e}");
    c.storage.s3.allow_http = true;
    c.validate().unwrap();
    for (field, bad) in
        [("bucket", ""), ("region", ""), ("prefix", "a//b"), ("prefix", "../x"), ("endpoint", "s3.local")]
    {
        let mut c = c.clone();
        match field {
            "bucket" => c.storage.s3.bucket = bad.into(),
            "region" => c.storage.s3.region = bad.into(),
            "prefix" => c.storage.s3.prefix = bad.into(),
            _ => c.storage.s3.endpoint = bad.into(),
        }
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(&format!("storage.s3.{field}")), "{field}={bad:?}: {e}");
    }
    c.storage.s3.max_in_flight = 0;
    assert!(c.validate().unwrap_err().to_string().contains("max_in_flight"));
    c.storage.s3.max_in_flight = 8;
    c.storage.s3.read_ahead = 0;
    assert!(c.validate().unwrap_err().to_string().contains("storage.s3.read_ahead"));
    let text =
        "[storage]\nobjects = \"s3\"\n[storage.s3]\nendpoint = \"https://s3.example.com\"\nsecret = \"x\"\n";
    let e = Config::from_toml(text).unwrap_err();
    assert!(e.contains("secret"), "credentials are not config keys: {e}");
}

/// `worker_threads = 0` leaves one CPU to the rest of the machine, never
/// going below one worker; a number is taken as it is, up to 1024.
#[test]
fn worker_threads_leave_a_cpu_unless_set() {
    let mut c = Config::default();
    assert_eq!([1, 2, 3, 8].map(|cpus| c.async_workers(cpus)), [1, 1, 2, 7]);
    c.worker_threads = 3;
    assert_eq!([1, 2, 8].map(|cpus| c.async_workers(cpus)), [3, 3, 3]);
    c.worker_threads = 1024;
    c.validate().unwrap();
    c.worker_threads = 1025;
    assert!(c.validate().unwrap_err().to_string().contains("worker_threads"));
}
