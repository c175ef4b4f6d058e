//! The configuration file as a whole: defaults, errors located, sections checked.

use std::path::Path;
use std::time::Duration;

use hep_proto::ProtoType;
use hep_transport::HEP_PORT;

use super::*;
use crate::outputs::relay::spool::SpoolConfig;
use crate::store::StoreConfig;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("hep.toml"), text)
}

#[test]
fn empty_file_is_the_embedded_default() {
    let c = parse("").unwrap();
    assert_eq!(c.listen, ["hep_udp:0.0.0.0:5656", "hep_tcp:0.0.0.0:5656"]);
    assert_eq!(c.outputs, ["store:hep-store"]);
    assert_eq!(c.store, StoreConfig::default());
    assert_eq!(
        (
            c.hep_send_timeout,
            c.hep_max_msg_chunks,
            c.hep_async,
            c.hep_async_max_postponed_chunks
        ),
        (100, 32, true, 32)
    );
    assert_eq!(
        (
            c.hep_capture_id,
            c.hep_async_local_connect_timeout,
            c.hep_async_local_write_timeout
        ),
        (1, 100, 10)
    );
}

#[test]
fn the_shutdown_deadline_defaults_to_10_s_and_0_means_none() {
    assert_eq!(
        parse("").unwrap().limits.shutdown_timeout(),
        Some(Duration::from_secs(10))
    );
    let c = parse("[limits]\nshutdown_timeout_ms = 0").unwrap();
    assert_eq!(c.limits.shutdown_timeout(), None);
}

#[test]
fn hep_port_is_the_default_port_of_relay_destinations_too() {
    let c = parse("outputs = [\"relay:hep_tcp:10.0.0.9\"]").unwrap();
    let port = |c: &Config| c.outputs[0].relay_destination().unwrap().port();
    assert_eq!(port(&c), HEP_PORT);
    let c = parse(
        "hep_port = 9060\noutputs = [\"relay:hep_tcp:10.0.0.9\", \"relay:hep_udp:10.0.0.9:7\"]",
    )
    .unwrap();
    assert_eq!(port(&c), 9060);
    assert_eq!(c.outputs[1].relay_destination().unwrap().port(), 7);
}

#[test]
fn hep_port_is_the_default_port_of_listen_specs() {
    let c = parse("hep_port = 9060\nlisten = [\"hep_udp:127.0.0.1\"]").unwrap();
    assert_eq!(c.listen[0].spec.addr, "127.0.0.1:9060".parse().unwrap());
}

#[test]
fn a_listener_may_name_the_networks_it_accepts() {
    let c = parse(
        "listen = [\"hep_udp:0.0.0.0:9060;allow=10.0.0.0/8,192.0.2.7\", \"hep_tcp:0.0.0.0\"]",
    )
    .unwrap();
    let specs = &c.listen;
    let allow = specs[0].allow.as_ref().unwrap();
    assert!(allow.contains("10.1.2.3".parse().unwrap()));
    assert!(!allow.contains("192.0.2.8".parse().unwrap()));
    assert_eq!(specs[1].allow, None);
    let e = parse("listen = [\"hep_udp:0.0.0.0;allow=10.0.0.0/33\"]")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:1:11: key `listen`: invalid listen spec"),
        "{e}"
    );
    assert!(e.contains("allow= expects networks"), "{e}");
}

#[test]
fn unknown_keys_name_file_line_and_key() {
    let e = parse("hep_port = 9060\nhep_max_msg_chunk = 3\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:2:1: unknown field `hep_max_msg_chunk`"),
        "{e}"
    );
    let e = parse("[limits]\nmax_conections = 3\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:2:1: unknown field `max_conections`"),
        "{e}"
    );
}

#[test]
fn bad_values_name_file_line_and_key() {
    let e = parse("\nlisten = [\"hep_udp:1.2.3.4\", \"udp:1.2.3.4\"]")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:2:30: key `listen`: invalid listen spec `udp:1.2.3.4`"),
        "{e}"
    );
    let e = parse("hep_port = 70000").unwrap_err().to_string();
    assert_eq!(
        e,
        "hep.toml:1:12: key `hep_port`: invalid value: integer `70000`, expected u16"
    );
    let e = parse("[limits]\nmax_connections = \"many\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:2:19: key `limits.max_connections`: invalid type"),
        "{e}"
    );
    let e = parse("outputs = [\n  \"relay:hep_udp:h:1;version=2\",\n  5,\n]")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:3:3: key `outputs`: invalid type"),
        "{e}"
    );
    let e = parse("[auth]\nkeys = { 2001 = 5 }")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:2:17: key `auth.keys`: invalid type"),
        "{e}"
    );
    let e = parse("[dedup]\ncapture_id_aware = true")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "hep.toml:1:1: section [dedup]: missing field `window_ms`"
    );
    let e = parse("[filter]\nproto_types = [\"sip\", 300]")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:2:23: key `filter.proto_types`: unknown protocol type `300`"),
        "{e}"
    );
    let e = parse("hep_async = 2").unwrap_err().to_string();
    assert_eq!(
        e,
        "hep.toml:1:13: key `hep_async`: expected true/false or 0/1, found 2"
    );
    let e = parse("[filter]\nagent_networks = [\"10.0.0.0/33\"]")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:2:19: key `filter.agent_networks`"),
        "{e}"
    );
    let e = parse("outputs = [\"kafka:x\"]").unwrap_err().to_string();
    assert!(e.starts_with("hep.toml:1:12: key `outputs`"), "{e}");
    let e = parse("[log]\nlevel = \"info,hep_transport=loud\"")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("hep.toml:2:9: key `log.level`"), "{e}");
    assert_eq!(
        parse("[log]\nlevel = \"warn,hep_transport=debug\"")
            .unwrap()
            .log
            .level,
        "warn,hep_transport=debug"
    );
}

#[test]
fn two_relays_cannot_share_a_spool_directory() {
    let e = parse(
        "outputs = [\n  \"relay:hep_tcp:a:1;spool=/var/spool/hep\",\n  \
         \"relay:hep_tcp:b:1;spool=/var/spool/hep\",\n]",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "hep.toml:3:3: key `outputs`: outputs `relay:hep_tcp:a:1;spool=/var/spool/hep` and \
         `relay:hep_tcp:b:1;spool=/var/spool/hep` both write /var/spool/hep (each output \
         needs a file or directory of its own)"
    );
    parse("outputs = [\"relay:hep_tcp:a:1;spool=/a\", \"relay:hep_tcp:b:1;spool=/b\"]").unwrap();
}

#[test]
fn two_outputs_cannot_write_one_file_or_directory() {
    let dir = std::env::temp_dir().join(format!("hep-conf-same-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let d = dir.display();
    let refused = [
        // One file, two writers: the lines of one interleave with the other's packets.
        (format!("json:{d}/a"), format!("pcap:{d}/a")),
        (format!("json:{d}/a"), format!("json:{d}/a")),
        // The same file, spelled differently.
        (format!("json:{d}/a"), format!("json:{d}/sub/../a")),
        (format!("pcap:{d}/a"), format!("pcap:{d}/./a")),
        // Stores, spools: one directory is one writer's.
        (format!("store:{d}/s"), format!("store:{d}/s/")),
        (
            format!("store:{d}/s"),
            format!("relay:hep_tcp:h:1;spool={d}/s"),
        ),
        // Standard output, twice.
        ("stdout".to_owned(), "json:-".to_owned()),
        ("json:-".to_owned(), "json:-".to_owned()),
        ("stdout".to_owned(), "stdout".to_owned()),
    ];
    for (a, b) in &refused {
        let e = parse(&format!("outputs = [\"{a}\", \"{b}\"]"))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "hep.toml:1:{}: key `outputs`: outputs `{a}` and `{b}` both write",
                16 + a.len()
            )),
            "{a} + {b}: {e}"
        );
    }
    let e = parse("outputs = [\"stdout\", \"json:-\"]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("both write standard output"), "{e}");
    // Different files, different directories, and outputs without one are fine.
    parse(&format!(
        "outputs = [\"json:{d}/a\", \"pcap:{d}/b\", \"store:{d}/s\", \"store:{d}/t\", \
         \"relay:hep_tcp:h:1;spool={d}/u\", \"relay:hep_tcp:h:1\", \"null\", \"null\", \"stdout\"]"
    ))
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_relay_to_one_of_our_own_listeners_is_refused() {
    let refused = [
        ("hep_udp:127.0.0.1:9060", "relay:hep_udp:127.0.0.1:9060"),
        ("hep_tcp:0.0.0.0:9060", "relay:hep_tcp:127.0.0.1:9060"),
        ("hep_tcp:0.0.0.0:9060", "relay:hep_tcp:localhost:9060"),
        (
            "hep_udp:[::]:9060",
            "relay:hep_udp:127.0.0.1:9060;version=2",
        ),
        ("hep_udp:[::]:9060", "relay:hep_udp:[::1]:9060"),
        (
            "hep_tcp:10.0.0.5:9060",
            "relay:hep_tcp:10.0.0.5:9060;spool=/var/spool/x",
        ),
        ("hep_udp:127.0.0.1", "relay:hep_udp:127.0.0.1:7000"),
    ];
    let config = |listen: &str, output: &str| {
        format!("hep_port = 7000\nlisten = [\"{listen}\"]\noutputs = [\"{output}\"]")
    };
    for (listen, output) in refused {
        let e = parse(&config(listen, output))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "hep.toml:3:12: key `outputs`: output `{output}` sends to listener `"
            )) && e.contains("it would receive what it relays, again and again"),
            "{listen} / {output}: {e}"
        );
    }
    // The default listeners (UDP and TCP on 0.0.0.0, port hep_port) count too.
    let e = parse("hep_port = 7000\noutputs = [\"relay:hep_tcp:127.0.0.1:7000\"]")
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sends to listener `hep_tcp:0.0.0.0:7000`"),
        "{e}"
    );
    let fine = [
        // Another port, another transport, another address.
        ("hep_udp:0.0.0.0:9060", "relay:hep_udp:127.0.0.1:9061"),
        ("hep_udp:0.0.0.0:9060", "relay:hep_tcp:127.0.0.1:9060"),
        ("hep_tcp:127.0.0.1:9060", "relay:hep_tcp:127.0.0.2:9060"),
        ("hep_tcp:10.0.0.5:9060", "relay:hep_tcp:10.0.0.6:9060"),
        // An IPv4-only listener does not receive what is sent to ::1.
        ("hep_udp:0.0.0.0:9060", "relay:hep_udp:[::1]:9060"),
        // A name other than localhost is not resolved here (the relay mark catches it).
        (
            "hep_tcp:0.0.0.0:9060",
            "relay:hep_tcp:homer.example.net:9060",
        ),
    ];
    for (listen, output) in fine {
        parse(&config(listen, output)).unwrap_or_else(|e| panic!("{listen} / {output}: {e}"));
    }
}

#[test]
fn the_auth_key_is_stripped_unless_strip_is_false() {
    assert!(parse("").unwrap().strip_auth_key(), "without [auth]");
    let c = parse("[auth]\nkey = \"k\"").unwrap();
    assert!(c.auth.as_ref().unwrap().strip && c.strip_auth_key());
    let c = parse("[auth]\nkey = \"k\"\nstrip = false").unwrap();
    assert!(!c.strip_auth_key());
    assert!(
        parse("[auth]\nkey = \"k\"\nstrip = true")
            .unwrap()
            .strip_auth_key()
    );
}

#[test]
fn spool_bounds_default_and_are_checked_together() {
    assert_eq!(parse("").unwrap().spool, SpoolConfig::default());
    let c = parse("[spool]\nmax_bytes = 1048576\nsegment_bytes = 65536\n").unwrap();
    assert_eq!(
        (c.spool.max_bytes, c.spool.segment_bytes),
        (1 << 20, 1 << 16)
    );
    assert_eq!(c.spool.replay_bytes, SpoolConfig::default().replay_bytes);
    let c = parse("[spool]\nreplay_margin_bytes = 4194304\n").unwrap();
    assert_eq!(c.spool.replay_margin_bytes, 4 << 20);
    let e = parse("\n[spool]\nmax_bytes = 100000\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:2:1: section [spool]: max_bytes (100000)"),
        "{e}"
    );
    let e = parse("[spool]\nsync_intervall_ms = 5\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `sync_intervall_ms`"), "{e}");
}

#[test]
fn relay_tls_needs_both_halves_of_a_client_certificate() {
    let c = parse("[relay_tls]\nca_file = \"ca.pem\"\nserver_name = \"homer\"").unwrap();
    assert_eq!(c.relay_tls.unwrap().server_name.as_deref(), Some("homer"));
    let e = parse("[relay_tls]\nca_file = \"ca.pem\"\ncert_file = \"c.pem\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:3:13: section [relay_tls]: set both"),
        "{e}"
    );
}

#[test]
fn tls_listeners_and_relays_need_their_sections() {
    let e = parse("listen = [\"hep_udp:0.0.0.0\", \"hep_tls:0.0.0.0:9061\"]")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:1:30: key `listen`: a hep_tls listener needs a [tls] section"),
        "{e}"
    );
    let e = parse("outputs = [\"relay:hep_tls:homer:9061\"]")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:1:12: key `outputs`: a hep_tls relay needs a [relay_tls]"),
        "{e}"
    );
    parse("outputs = [\"relay:hep_tls:homer:9061\"]\n[relay_tls]\nca_file = \"ca.pem\"").unwrap();
}

#[test]
fn tls_clients_map_certificates_to_capture_ids() {
    let fp = format!("sha256:{}", ["ab"; 32].join(":"));
    let c = parse(&format!(
        "[tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\nclient_ca_file = \"ca.pem\"\n\
         [tls.clients]\n\"agent-a.example\" = [2001, 2002]\n\"{fp}\" = [3001]\n"
    ))
    .unwrap();
    let tls = c.tls.as_ref().unwrap();
    assert_eq!(tls.clients["agent-a.example"], [2001, 2002]);
    let ids = tls.client_ids().unwrap();
    let a = hep_transport::ClientIdentity::new([0; 32], ["agent-a.example".to_owned()]);
    assert!(ids.allows(&a, 2002) && !ids.allows(&a, 3001));
    assert_eq!(parse(&c.to_toml()).unwrap(), c, "prints and parses back");

    let e = parse(
        "[tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n[tls.clients]\n\"a.example\" = [1]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("section [tls.clients]: needs `client_ca_file`"),
        "{e}"
    );
    let e = parse(
        "[tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\nclient_ca_file = \"ca.pem\"\n\
         [tls.clients]\n\"sha256:abcd\" = [1]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("hep.toml:5:1: section [tls.clients]: `sha256:abcd` is not"),
        "{e}"
    );
}

#[test]
fn proto_types_are_names_or_numbers() {
    let c = parse("[filter]\nproto_types = [\"sip\", 100, \"5\"]").unwrap();
    let f = c.filter.unwrap();
    assert_eq!(
        f.proto_type_values().unwrap(),
        [ProtoType::Sip, ProtoType::Log, ProtoType::Rtcp]
    );
    assert_eq!(f.proto_types.unwrap(), ["sip", "100", "5"]);
}

#[test]
fn store_settings_are_checked() {
    let c = parse("[store]\nmax_age_hours = 0\npartition_minutes = 1440\nbatch_size = 5").unwrap();
    assert_eq!(
        (
            c.store.max_age_hours,
            c.store.partition_minutes,
            c.store.batch_size
        ),
        (0, 1440, 5)
    );
    assert_eq!(c.store.max_size_mb, 10_240);
    let e = parse("[store]\npartition_minutes = 0")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:2:21: key `store.partition_minutes`: expected 1 to 1440"),
        "{e}"
    );
    let e = parse("[store]\nretention = 3").unwrap_err().to_string();
    assert!(
        e.starts_with("hep.toml:2:1: unknown field `retention`"),
        "{e}"
    );
}

#[test]
fn hep_async_takes_opensips_0_and_1() {
    assert!(!parse("hep_async = 0").unwrap().hep_async);
    assert!(parse("hep_async = 1").unwrap().hep_async);
    assert!(!parse("hep_async = false").unwrap().hep_async);
}

#[test]
fn effective_config_prints_and_parses_back() {
    let c =
        parse("[auth]\nkey = \"k\"\nkeys = { 2001 = \"a\" }\n[dedup]\nwindow_ms = 500").unwrap();
    let printed = c.to_toml();
    assert!(printed.contains("hep_max_msg_chunks = 32"), "{printed}");
    let again = parse(&printed).unwrap();
    assert_eq!(again.to_toml(), printed);
}

#[test]
fn printed_and_debugged_configs_show_that_keys_are_set_never_the_keys() {
    let c = parse("[auth]\nkey = \"shared-s3cret\"\nkeys = { 2001 = \"agent-s3cret\" }\n").unwrap();
    let auth = c.auth.as_ref().unwrap();
    assert_eq!(auth.key.as_deref(), Some("shared-s3cret"), "kept for use");
    for shown in [c.to_toml(), format!("{c:?}")] {
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains(REDACTED) && shown.contains("2001"),
            "{shown}"
        );
    }
}

#[test]
fn specs_are_parsed_once_and_kept_with_their_text() {
    let c =
        parse("hep_port = 9060\nlisten = [\"hep_udp:127.0.0.1\"]\noutputs = [\"relay:hep_tcp:h\"]")
            .unwrap();
    // As written, for messages and `check-config`; parsed with the file's hep_port.
    assert_eq!(c.listen[0].text(), "hep_udp:127.0.0.1");
    assert_eq!(c.listen[0].spec.addr.port(), 9060);
    assert_eq!(c.outputs[0].text(), "relay:hep_tcp:h");
    assert_eq!(c.outputs[0].relay_destination().unwrap().port(), 9060);
    assert!(c.to_toml().contains("outputs = [\"relay:hep_tcp:h\"]"));
}

#[test]
fn a_configuration_built_in_code_is_checked_like_a_file() {
    // A spec cannot be lost on the way: a Config holds parsed specs only, and the checks
    // of a file apply to them.
    let mut c = Config {
        outputs: vec![
            Written::from(OutputSpec::Stdout),
            Written::from(OutputSpec::Json(None)),
        ],
        ..Config::default()
    };
    let e = c.check_outputs().unwrap_err().to_string();
    assert_eq!(
        e,
        "outputs `stdout` and `json:-` both write standard output, where their lines would \
         interleave (keep one)"
    );
    c.outputs.pop();
    c.check_outputs().unwrap();
}

#[test]
fn http_is_on_on_loopback_by_default_and_its_tokens_are_secrets() {
    let c = parse("").unwrap();
    assert!(c.http.enabled);
    assert_eq!(c.http.listen, crate::http::DEFAULT_LISTEN);
    assert_eq!(parse(&c.to_toml()).unwrap(), c, "prints and parses back");
    assert!(!parse("[http]\nenabled = false").unwrap().http.enabled);

    let c =
        parse("[http]\nlisten = \"0.0.0.0:8080\"\n[http.tokens]\n\"tenant-a-0123456789\" = [7]\n")
            .unwrap();
    assert_eq!(c.http.tokens["tenant-a-0123456789"], [7]);
    c.http.check().unwrap();
    for shown in [c.to_toml(), format!("{c:?}")] {
        assert!(!shown.contains("tenant-a"), "{shown}");
        assert!(shown.contains("[7]") || shown.contains("7"), "{shown}");
    }

    let e = parse("[http]\nlisten = \"localhost\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:2:10: key `http.listen`: expected IP:PORT"),
        "{e}"
    );
    let e = parse("[http.tokens]\n\"short\" = [1]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("key `http.tokens`: a token is 16"), "{e}");
    let e = parse("[http.tokens]\n\"0123456789abcdef\" = []")
        .unwrap_err()
        .to_string();
    assert!(e.contains("names the capture ids"), "{e}");

    let e = parse("[http]\ncert_file = \"web.pem\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs both `cert_file` and `key_file`"), "{e}");
    let c = parse("[http]\ncert_file = \"web.pem\"\nkey_file = \"web.key\"").unwrap();
    assert_eq!(c.http.tls.as_ref().unwrap().key_file, Path::new("web.key"));
    assert_eq!(parse(&c.to_toml()).unwrap(), c, "prints and parses back");
}

#[test]
fn aliases_map_addresses_and_networks_to_names() {
    let c = parse(
        "[aliases]\n\"10.0.0.1:5060\" = \"proxy\"\n\"10.0.0.0/8\" = \"core\"\n\
         \"2001:db8::/32\" = \"v6\"\n",
    )
    .unwrap();
    assert_eq!(c.aliases.name_of_text("10.0.0.1:5060"), Some("proxy"));
    assert_eq!(c.aliases.name_of_text("10.9.0.1:5060"), Some("core"));
    assert_eq!(c.aliases.name_of_text("[2001:db8::5]:5060"), Some("v6"));
    // check-config prints them as written.
    assert!(
        c.to_toml().contains("[aliases]\n\"10.0.0.0/8\" = \"core\""),
        "{}",
        c.to_toml()
    );
    assert!(parse("").unwrap().aliases.is_empty());
}

#[test]
fn bad_aliases_are_named_at_their_line() {
    for (text, expected) in [
        (
            "[aliases]\n\"10.0.0.256\" = \"x\"",
            "hep.toml:2:16: section [aliases]: `10.0.0.256`: expected IP:PORT",
        ),
        (
            "[aliases]\n\"10.0.0.0/40\" = \"x\"",
            "hep.toml:2:17: section [aliases]: `10.0.0.0/40`: `/40` is not a prefix length",
        ),
        (
            "[aliases]\n\"10.0.0.1\" = \"\"",
            "hep.toml:2:14: section [aliases]: `10.0.0.1`: the name is empty",
        ),
        (
            "[aliases]\n\"::1\" = \"a\"\n\"0::1\" = \"b\"",
            "hep.toml:2:9: section [aliases]: `::1`: the same address as `0::1`",
        ),
        (
            "[aliases]\n\"10.0.0.1\" = 5",
            "hep.toml:2:14: key `aliases.\"10.0.0.1\"`: expected a name in quotes",
        ),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.starts_with(expected), "{text:?}:\n{e}");
    }
}

#[test]
fn correlation_headers_take_a_regex_and_errors_name_the_key() {
    let c = parse("").unwrap();
    assert_eq!(c.correlation, crate::store::Correlation::default());
    assert_eq!(
        c.store.correlation, c.correlation,
        "the store gets the same rules"
    );
    let c = parse(
        "[correlation]\nheaders = [\"X-CID\", { name = \"X-Orig-CID\", regex = \"^([^;]+)\" }]\n\
         session_id = false",
    )
    .unwrap();
    let names: Vec<&str> = c
        .correlation
        .headers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(names, ["X-CID", "X-Orig-CID"]);
    let orig = c.correlation.headers[1].regex.as_ref().expect("a regex");
    assert_eq!(orig.extract("a-leg@h;foo=1"), Some("a-leg@h"));
    assert!(!c.store.correlation.session_id);
    let again = parse(&c.to_toml()).unwrap();
    assert_eq!(again.correlation, c.correlation, "printed and read back");

    let e =
        parse("[correlation]\nheaders = [\"X-CID\", { name = \"X-B\", regex = \"(unclosed\" }]")
            .unwrap_err()
            .to_string();
    assert!(
        e.starts_with("hep.toml:2:21: key `correlation.headers[1].regex`: regex parse error"),
        "{e}"
    );
    let e = parse("[correlation]\nheaders = [\"X CID\"]")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:2:12: key `correlation.headers[0].name`: expected a SIP header"),
        "{e}"
    );
    let nine = ["\"X-A\""; 9].join(", ");
    let e = parse(&format!("[correlation]\nheaders = [{nine}]"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("hep.toml:2:11: key `correlation.headers`: at most 8 headers"),
        "{e}"
    );
}

#[test]
fn cluster_peers_and_their_token_are_checked() {
    let c = parse(
        "[cluster]\nname = \"node-a\"\npeers = [\"http://10.0.0.2:9080\", \"http://b.example:9080/\"]\n\
         token = \"a-token-of-24-characters\"\ntimeout_ms = 500",
    )
    .unwrap();
    let urls: Vec<&str> = c.cluster.peers.iter().map(|p| p.url()).collect();
    assert_eq!(urls, ["http://10.0.0.2:9080", "http://b.example:9080"]);
    assert_eq!(c.cluster.timeout(), Duration::from_millis(500));
    assert_eq!(c.cluster.node_name(), "node-a");
    assert!(!c.to_toml().contains("a-token-of"), "{}", c.to_toml());
    assert!(!format!("{c:?}").contains("a-token-of"));
    assert!(Config::default().cluster.peers.is_empty());
    for (text, says) in [
        ("peers = [\"10.0.0.2:9080\"]", "http://HOST:PORT"),
        ("peers = [\"https://10.0.0.2:9080\"]", "HTTPS"),
        ("peers = [\"http://a:1\", \"http://a:1\"]", "twice"),
        ("peers = [\"http://a:0\"]", "port"),
        ("timeout_ms = 0", "timeout_ms"),
        ("timeout_ms = 9000", "timeout_ms"),
        ("token = \"short\"", "cluster.token"),
        (
            "token = \"a-token-of-24-characters\"\ntoken_file = \"/x\"",
            "not both",
        ),
        ("token_file = \"/no/such/token\"", "/no/such/token"),
        ("name = \"\"", "cluster.name"),
    ] {
        let e = parse(&format!("[cluster]\n{text}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{text}: {e}");
        assert!(
            e.contains("hep.toml:"),
            "{text}: names the file and line: {e}"
        );
    }
}
