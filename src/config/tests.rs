//! Unit tests of `config.rs`.

use super::*;

#[test]
fn flags_override_file_override_defaults() {
    let file: FileConfig =
        toml::from_str("[server]\nbind = \"127.0.0.1:9000\"\n[document]\nfanout_tick_ms = 0\n")
            .unwrap();
    let c = Config::resolve(file, None, Some("/tmp/x".into())).unwrap();
    assert_eq!(c.bind.port(), 9000);
    assert_eq!(c.doc.durability, Durability::Strict);
    assert_eq!(c.backend, Backend::Sled);
    let relaxed: FileConfig =
        toml::from_str("[storage]\ndurability = \"relaxed\"\nrelaxed_flush_ms = 50\n").unwrap();
    let r = Config::resolve(relaxed, None, None).unwrap();
    assert_eq!(
        r.doc.durability,
        Durability::Relaxed {
            interval: Duration::from_millis(50)
        }
    );
    assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    assert!(c.doc.fanout_tick.is_zero());
    let c = Config::resolve(
        FileConfig::default(),
        Some("127.0.0.1:1".parse().unwrap()),
        None,
    )
    .unwrap();
    assert_eq!(c.bind.port(), 1);
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
}

#[test]
fn storage_and_window_limits_resolve() {
    let c = Config::resolve(FileConfig::default(), None, None).unwrap();
    assert_eq!(c.sled_cache_bytes, SLED_CACHE_BYTES);
    let file: FileConfig =
        toml::from_str("[storage]\ncache_mb = 64\n[document]\nhistory_window = 1\n").unwrap();
    let c = Config::resolve(file, None, None).unwrap();
    assert_eq!(c.sled_cache_bytes, 64 * 1024 * 1024);
    assert_eq!(c.doc.document.history_window, 1);
}

#[test]
fn out_of_range_values_are_refused_with_their_key() {
    for (toml, key) in [
        ("[server]\nworkers = 100000\n", "[server] workers"),
        ("[server]\nworkers = 0\n", "[server] workers"),
        (
            "[session]\nmax_ops_per_s = -5.0\n",
            "[session] max_ops_per_s",
        ),
        (
            "[session]\nmax_ops_per_s = nan\n",
            "[session] max_ops_per_s",
        ),
        ("[session]\nop_burst = 0.5\n", "[session] op_burst"),
        (
            "[document]\nhistory_window = 0\n",
            "[document] history_window",
        ),
        (
            "[document]\nfanout_tick_ms = 5000\n",
            "[document] fanout_tick_ms",
        ),
        (
            "[session]\nmax_frame_bytes = 10\n",
            "[session] max_frame_bytes",
        ),
        ("[storage]\ncache_mb = 0\n", "[storage] cache_mb"),
        (
            "[storage]\nrelaxed_flush_ms = 0\n",
            "[storage] relaxed_flush_ms",
        ),
        ("[auth]\nclock_skew_s = 100000\n", "[auth] clock_skew_s"),
        ("[crypto]\nthreads = 0\n", "[crypto] threads"),
        (
            "[session]\nheartbeat_interval_s = 30\nclient_timeout_s = 10\n",
            "client_timeout_s",
        ),
    ] {
        let file: FileConfig = toml::from_str(toml).unwrap();
        let e = Config::resolve(file, None, None).unwrap_err().to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
    // Negative integers do not even parse into the unsigned fields.
    assert!(toml::from_str::<FileConfig>("[server]\nworkers = -1\n").is_err());
}

#[test]
fn a_public_address_needs_authentication_or_an_explicit_opt_in() {
    let resolve = |toml: &str, bind: &str| {
        let file: FileConfig = toml::from_str(toml).unwrap();
        Config::resolve(file, Some(bind.parse().unwrap()), None).unwrap()
    };
    assert!(resolve("", "127.0.0.1:8080").check_exposure().is_ok());
    assert!(resolve("", "[::1]:8080").check_exposure().is_ok());
    let e = resolve("", "0.0.0.0:8080").check_exposure().unwrap_err();
    assert!(e.to_string().contains("authentication off"), "{e}");
    assert!(resolve("", "10.1.2.3:8080").check_exposure().is_err());
    let open = "[server]\nallow_insecure = true\n";
    assert!(resolve(open, "0.0.0.0:8080").check_exposure().is_ok());
    let auth = "[auth]\nmode = \"sm2\"\npublic_key_file = \"/k.pem\"\n";
    assert!(resolve(auth, "0.0.0.0:8080").check_exposure().is_ok());
}

#[test]
fn unknown_keys_are_errors() {
    assert!(toml::from_str::<FileConfig>("[server]\nbnd = 1\n").is_err());
    assert!(toml::from_str::<FileConfig>("[nope]\n").is_err());
}
